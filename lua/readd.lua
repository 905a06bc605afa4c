-- readd.lua: puts back into Redis a claim that PostgreSQL holds and Redis
-- lost (AOF everysec can lose the last second of writes in a crash), so the
-- user cannot claim a second packet and the stock counts the packet.
--
-- KEYS[1] rp:{id}:meta   KEYS[2] rp:{id}:stock   KEYS[3] rp:{id}:claims
-- ARGV[1] user id  ARGV[2] "amount:claimed_at_ms"  ARGV[3] amount
--
-- Returns 1 when the claim was put back, 0 when Redis already had it (or the
-- campaign is not loaded: load.lua restores claims itself), and 2 when it
-- was put back but its amount had no stock left: the packet was handed out
-- again after the loss (the campaign is oversold by one).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 0 then
  return 0
end
if take1(KEYS[2], ARGV[3]) == 0 then
  return 2
end
return 1
