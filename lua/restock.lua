#!lua
-- restock.lua: adds packets to a loaded campaign's stock.
--
-- KEYS[1] rp:{id}:meta   hash  start, end (unix ms), gen
-- KEYS[2] rp:{id}:stock  hash  amount -> remaining count
-- ARGV[1] amount   ARGV[2] packets to add (a positive integer)
--
-- The stock and the meta hash's 'gen' (the campaign's stock generation)
-- change together: every api replica re-reads gen and, when it moved,
-- drops what it remembered of the campaign being sold out. Returns the new
-- generation, or -1 when the campaign is not loaded (nothing is written:
-- its load counts the stock from PostgreSQL).
local n = tonumber(ARGV[2])
if not tonumber(ARGV[1]) or not n or n < 1 or n % 1 ~= 0 then
  return redis.error_reply('RPARGS amount and a positive count')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'gen', 1)
