#!lua
-- bucket_final.lua: sets or clears a bucket's 'final' (sold out
-- everywhere: bucket_claim.lua answers SOLD_OUT instead of EMPTY), under
-- the caller's lease.
--
-- KEYS[1] the bucket's meta   KEYS[2] its stock   KEYS[3] its out
-- ARGV[1] fence   ARGV[2] '1' set, '0' clear
--
-- Setting is refused (0) while the bucket has stock or transfers not
-- settled: the global check read every slot empty under this fence, and
-- the fence kept older leases out since, so this cannot happen unless
-- something else went wrong, and then the bucket stays open. Returns 1
-- done, 0 refused, -1 not loaded, -2 fence older than one seen.
local f = tonumber(ARGV[1])
if not f or f < 0 or f % 1 ~= 0 or (ARGV[2] ~= '1' and ARGV[2] ~= '0') then
  return redis.error_reply('RPARGS fence, 1 or 0')
end
local refused = lease(KEYS[1], ARGV[1], false)
if refused then return refused end
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[1], 'final')
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('HLEN', KEYS[3]) > 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'final', 1)
return 1
