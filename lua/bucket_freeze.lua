#!lua
-- bucket_freeze.lua: freezes one slot of a bucketed campaign whose other
-- slot lost its data: bucket_claim.lua answers BUSY and no stock moves
-- until the campaign is rebuilt from PostgreSQL.
--
-- KEYS[1] a meta hash (a bucket's or the home's)
-- Returns 1 frozen, 0 not there (nothing written).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'frozen', 1)
return 1
