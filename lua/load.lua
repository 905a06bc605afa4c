-- load.lua: makes a campaign visible to opens, once.
--
-- KEYS[1] rp:{id}:meta   KEYS[2] rp:{id}:stock   (see claim.lua)
-- ARGV[1] start (unix ms)  ARGV[2] end (unix ms)
-- ARGV[3..] pairs: amount, remaining count
--
-- The meta hash is what claim.lua looks for first, so it is written last,
-- in the same script as the stock: an open sees either no campaign or a
-- whole one. When meta already exists the campaign is live and nothing is
-- touched (returns 0); otherwise the stock is (re)written and 1 returned.
-- The claims hash is restored before this script runs, by the caller.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV, 2 do
  local c = tonumber(ARGV[i + 1])
  if c > 0 then
    redis.call('HSET', KEYS[2], ARGV[i], c)
  end
end
redis.call('HSET', KEYS[1], 'start', ARGV[1], 'end', ARGV[2])
return 1
