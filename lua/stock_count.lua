#!lua
-- stock_count.lua: one slot's packets per amount, read in one atomic step
-- for a settle of added stock (buckets.go, SettleStock). A claim moves a
-- packet from the slot's stock to its claims within the slot, so the two
-- read together count every packet of the slot once, whatever opens run
-- around the call.
--
-- KEYS[1] meta    KEYS[2] stock (a campaign's or bucket's stock, or the pool)
-- KEYS[3] claims  KEYS[4] out (transfers taken from the slot, not settled)
-- Reply: {-1} when meta does not exist; else {pending, then per amount:
-- amount, in stock, claimed}, pending being the transfers in the out log.
-- Cost: one pass over the claims (HVALS), O(claims of the slot): a rare
-- repair's price (about 0.3 s of Redis for a million claims).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local per = {}
local s = redis.call('HGETALL', KEYS[2])
for i = 1, #s, 2 do
  per[s[i]] = {tonumber(s[i + 1]), 0}
end
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
  local a = string.sub(v, 1, string.find(v, ':', 1, true) - 1)
  local e = per[a]
  if not e then
    e = {0, 0}
    per[a] = e
  end
  e[2] = e[2] + 1
end
local r = {redis.call('HLEN', KEYS[4])}
for a, e in pairs(per) do
  r[#r + 1] = tonumber(a)
  r[#r + 1] = e[1]
  r[#r + 1] = e[2]
end
return r
