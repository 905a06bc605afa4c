#!lua
-- bucket_lock.lua: takes a bucketed campaign's rebalancing lease, at its
-- home. Stock moves (refills, steals, the sweeper, the global sold-out
-- check, stock added back) happen under it, one process at a time.
--
-- KEYS[1] rp:{id}:meta   hash    fence: the last lease's number
-- KEYS[2] rp:{id}:rebal  string  the lease: its fence, expiring after ARGV[1] ms
--
-- Returns the lease's fence, a number above every earlier one; 0 when
-- another process holds the lease; -1 when the campaign is not loaded;
-- -3 when it is frozen. Every script that moves stock is given the fence
-- and refuses one lower than the highest its slot has seen, so a process
-- whose lease expired mid-way (a pause, a slow network) cannot move stock
-- under the next holder's feet.
local ttl = tonumber(ARGV[1])
if not ttl or ttl < 1 or ttl % 1 ~= 0 then
  return redis.error_reply('RPARGS lease ms')
end
local m = meta(KEYS[1], 'frozen')
if not m then return -1 end
if m[2] then
  return -3
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local f = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('SET', KEYS[2], f, 'PX', ttl)
return f
