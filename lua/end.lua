#!lua
-- end.lua: ends a campaign's window now, never later.
--
-- KEYS[1] rp:{id}:meta   hash  start, end (unix ms), gen
-- ARGV[1] the end PostgreSQL recorded (unix ms)
--
-- The end becomes the earliest of the current end, ARGV[1] and Redis TIME,
-- so claim.lua answers ENDED from the next call on, whatever the clocks of
-- PostgreSQL and the api; the start is moved back to the end if it was
-- later (a campaign ended before it started never opens). Running it again
-- changes nothing. Returns the end, or -1 when the campaign is not loaded
-- (nothing is written: its load reads the end from PostgreSQL).
local e = tonumber(ARGV[1])
if not e or e % 1 ~= 0 then
  return redis.error_reply('RPARGS end not an integer')
end
local m = meta(KEYS[1], 'end')
if not m then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
e = math.min(e, now, tonumber(m[2]))
if e < tonumber(m[2]) then
  redis.call('HSET', KEYS[1], 'end', string.format('%.0f', e))
end
if tonumber(m[1]) > e then
  redis.call('HSET', KEYS[1], 'start', string.format('%.0f', e))
end
return e
