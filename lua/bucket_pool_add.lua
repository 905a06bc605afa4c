#!lua
-- bucket_pool_add.lua: stock added back to a bucketed campaign goes into
-- its pool (buckets draw it from there on their next refill), under the
-- caller's lease, after the caller cleared every bucket's 'final'.
--
-- KEYS[1] rp:{id}:meta  hash  fence, gen   KEYS[2] rp:{id}:pool
-- ARGV[1] fence   ARGV[2] amount   ARGV[3] packets to add (a positive integer)
--
-- Returns the campaign's new stock generation (as restock.lua), -1 when
-- the campaign is not loaded, -2 when the fence is older than the home's,
-- -3 when the campaign is frozen (nothing written).
local f, n = tonumber(ARGV[1]), tonumber(ARGV[3])
if not f or f < 0 or f % 1 ~= 0 or not tonumber(ARGV[2]) or not n or n < 1 or n % 1 ~= 0 then
  return redis.error_reply('RPARGS fence, amount and a positive count')
end
local m = redis.call('HMGET', KEYS[1], 'fence', 'start', 'frozen')
if not m[2] then
  return -1
end
if f < tonumber(m[1] or '0') then
  return -2
end
if m[3] then
  return -3
end
redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'gen', 1)
