-- prelude.lua: helpers that withPrelude (scripts.go) puts in front of the
-- scripts that use them, so that a slot's checks refuse, and a stock loses
-- a packet, the same way in every script. Never in front of claim.lua: the
-- hot path's text and cost stay its own.

-- meta reads a meta hash's 'start' and the fields named after it; nil when
-- the campaign (or the bucket) is not loaded, as every load writes 'start'.
local function meta(key, ...)
  local m = redis.call('HMGET', key, 'start', ...)
  if m[1] then
    return m
  end
end

-- lease admits the caller's fence (ARGV's string, already checked) at a
-- slot: nil and {start, fence, frozen, final}, or the refusal: -1 not
-- loaded, -2 older than a fence the slot has seen (an expired lease: a newer
-- one holds), -3 frozen where refuse_frozen. A refusal writes nothing; an
-- admitted fence becomes the slot's, so no older lease moves stock after it.
local function lease(key, fence, refuse_frozen)
  local m = meta(key, 'fence', 'frozen', 'final')
  if not m then
    return -1
  end
  local f, seen = tonumber(fence), tonumber(m[2] or '0')
  if f < seen then
    return -2
  end
  if refuse_frozen and m[3] then
    return -3
  end
  if f > seen then
    redis.call('HSET', key, 'fence', fence)
  end
  return nil, m
end

-- take1 takes one packet of amount a out of stock hash key: 1, or 0 when it
-- holds none. An amount at 0 is removed, as claim.lua writes it back: a
-- stock hash holds only amounts still in stock (EXISTS says it is empty).
local function take1(key, a)
  local c = tonumber(redis.call('HGET', key, a) or '0')
  if c <= 0 then
    return 0
  end
  if c == 1 then
    redis.call('HDEL', key, a)
  else
    redis.call('HINCRBY', key, a, -1)
  end
  return 1
end
