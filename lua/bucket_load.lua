#!lua
-- bucket_load.lua: load.lua for one slot of a bucketed campaign (a bucket,
-- or the home with its pool), with extra fields in the meta hash.
--
-- KEYS[1] meta   KEYS[2] stock (a bucket's, or rp:{id}:pool)
-- ARGV[1] start (unix ms)  ARGV[2] end (unix ms)  ARGV[3] m
-- ARGV[4 .. 3+2m] m pairs: meta field, value (fence, buckets)
-- then pairs: amount, count
--
-- As load.lua: when meta exists nothing is touched (returns 0); otherwise
-- the stock is (re)written, the meta hash last, and 1 returned.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local m = tonumber(ARGV[3])
redis.call('DEL', KEYS[2])
for i = 4 + 2 * m, #ARGV, 2 do
  local c = tonumber(ARGV[i + 1])
  if c > 0 then
    redis.call('HSET', KEYS[2], ARGV[i], c)
  end
end
redis.call('HSET', KEYS[1], 'start', ARGV[1], 'end', ARGV[2], unpack(ARGV, 4, 3 + 2 * m))
return 1
