-- claim.lua: one user opens one packet of one campaign, atomically.
--
-- KEYS[1] rp:{id}:meta    hash  start, end (unix ms)
-- KEYS[2] rp:{id}:stock   hash  amount -> remaining count (amounts at 0 are removed)
-- KEYS[3] rp:{id}:claims  hash  user id -> "amount:claimed_at_ms"
-- ARGV[1] user id
-- ARGV[2] a uniform random integer in [0, 2^53), drawn by the caller
--         (Lua's math.random inside Redis is not a usable source; SPEC.md)
--
-- Checks in SPEC order: campaign exists, window (Redis TIME, so every API
-- replica agrees), already opened, stock. Returns {code} or
-- {code, amount, claimed_at_ms, end_ms[, claims]}; the codes are lua.Outcome
-- values. end_ms lets the api answer repeats and sold-out floods from memory
-- until the window closes; claims (SOLD_OUT only: how many users hold a
-- packet) tells it whether its copy of the claims is whole.
local m = redis.call('HMGET', KEYS[1], 'start', 'end')
if not m[1] then
  return {0} -- NOT_FOUND
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(m[1]) then
  return {1} -- NOT_STARTED
end
if now >= tonumber(m[2]) then
  return {2} -- ENDED
end
local prev = redis.call('HGET', KEYS[3], ARGV[1])
if prev then
  local sep = string.find(prev, ':', 1, true)
  return {3, tonumber(string.sub(prev, 1, sep - 1)), tonumber(string.sub(prev, sep + 1)), tonumber(m[2])} -- ALREADY_OPENED
end
-- The stock hash holds only amounts still in stock (at most 64), so its sum
-- is the packets left; no separate counter to keep in step.
local s = redis.call('HGETALL', KEYS[2])
local left = 0
for i = 2, #s, 2 do
  left = left + tonumber(s[i])
end
if left <= 0 then
  return {4, 0, 0, tonumber(m[2]), redis.call('HLEN', KEYS[3])} -- SOLD_OUT
end
-- A draw from the bag: every remaining packet is equally likely, so each
-- amount is picked with probability remaining(amount) / left. Doubles hold
-- integers below 2^53 exactly, and the bias of the modulo is below
-- left / 2^53 (< 1e-6 at the largest inventory).
local r = tonumber(ARGV[2]) % left
for i = 1, #s, 2 do
  local c = tonumber(s[i + 1])
  if r < c then
    local amount = s[i]
    if c == 1 then
      redis.call('HDEL', KEYS[2], amount)
    else
      redis.call('HINCRBY', KEYS[2], amount, -1)
    end
    redis.call('HSET', KEYS[3], ARGV[1], amount .. ':' .. now)
    return {5, tonumber(amount), now, tonumber(m[2])} -- OK
  end
  r = r - c
end
return redis.error_reply('RPSTOCK draw fell outside the stock')
