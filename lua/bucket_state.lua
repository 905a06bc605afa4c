#!lua
-- bucket_state.lua: one slot's part of a bucketed campaign's global
-- sold-out check (the home's pool, or a bucket), read under the caller's
-- lease and stamped with its fence, so that no older lease can move stock
-- here afterwards.
--
-- KEYS[1] meta   KEYS[2] stock (the pool or a bucket's)   KEYS[3] out
-- ARGV[1] fence
--
-- Reply: {1, packets left, transfers not settled, final (0/1), frozen (0/1)};
-- {-1} not loaded; {-2} fence older than one the slot has seen.
local f = tonumber(ARGV[1])
if not f or f < 0 or f % 1 ~= 0 then
  return redis.error_reply('RPARGS fence')
end
local refused, m = lease(KEYS[1], ARGV[1], false)
if refused then return {refused} end
local left = 0
for _, c in ipairs(redis.call('HVALS', KEYS[2])) do
  left = left + tonumber(c)
end
return {1, left, redis.call('HLEN', KEYS[3]), m[4] and 1 or 0, m[3] and 1 or 0}
