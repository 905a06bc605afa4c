#!lua
-- bucket_claim.lua: claim.lua for one bucket of a bucketed campaign (see
-- keys.go): the opens of a batch of the bucket's users, decided atomically
-- in one call on the bucket's slot.
--
-- KEYS[1] rp:{tag}:meta    hash  start, end (unix ms), final, frozen
-- KEYS[2] rp:{tag}:stock   hash  amount -> remaining count in this bucket
-- KEYS[3] rp:{tag}:claims  hash  user id -> "amount:claimed_at_ms"
-- ARGV    as claim.lua: the user ids (all of this bucket: the caller hashes
--         them), then one random per user in [0, 2^53)
--
-- As claim.lua, but for an empty bucket: SOLD_OUT only when 'final' is
-- set (a global check found the pool, every bucket and every transfer
-- empty, and nothing has been credited since); otherwise EMPTY, and the
-- caller moves stock into the bucket (refill from the pool, or a steal
-- from the fullest bucket) and asks again. A frozen bucket (its campaign
-- is being rebuilt after a shard lost its data) answers BUSY, claiming
-- nothing. Reply:
--   {code}                     0 NOT_FOUND, 1 NOT_STARTED, 2 ENDED or 7 BUSY, for every user
--   {end_ms, now_ms, left, per user: 5, amount               OK, claimed at now_ms
--                                    3, amount, claimed_at   ALREADY_OPENED
--                                    4, claims               SOLD_OUT (claims of this bucket)
--                                    6                       EMPTY (nothing claimed)}
-- left is the bucket's stock after the batch, or -1 when no user of the
-- batch needed it (all ALREADY_OPENED): the caller refills below a mark.
--
-- Cost, argument checks and the draw are claim.lua's: 'final' and 'frozen'
-- come in the same HMGET as the window.
local call = redis.call
local n = #ARGV
local m = n / 2
if n == 0 or n % 2 == 1 or m > 1024 then
  return redis.error_reply('RPARGS want 1 to 1024 user ids, then as many randoms')
end
for i = 1, m do
  if ARGV[i] == '' then
    return redis.error_reply('RPARGS empty user id')
  end
  local r = tonumber(ARGV[m + i])
  if not r or r < 0 or r >= 9007199254740992 or r % 1 ~= 0 then
    return redis.error_reply('RPARGS random not an integer in [0, 2^53)')
  end
end

local meta = call('HMGET', KEYS[1], 'start', 'end', 'final', 'frozen')
if not meta[1] then
  return {0} -- NOT_FOUND
end
local t = call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then
  return {1} -- NOT_STARTED
end
local endms = tonumber(meta[2])
if now >= endms then
  return {2} -- ENDED
end
if meta[4] then
  return {7} -- BUSY: frozen
end

local prev = call('HMGET', KEYS[3], unpack(ARGV, 1, m))
local out, o = {endms, now, -1}, 3
local at = ':' .. now
-- The stock, read at the first user who draws: s is HGETALL's flat
-- {amount, count, ...} with the counts turned into numbers and kept in step
-- with the draws. The hash holds only amounts still in stock (at most 64),
-- so the counts sum to the packets left; no separate counter to keep in
-- step. tj is the index in s of the first amount drawn and tk how many of
-- it were; took[j] counts the draws of any other. The claims made are
-- written at the end: w holds them as HSET's field, value list and mine
-- maps each claimant to their amount, for a user who comes again in the
-- batch. A batch of one makes none of these tables: it costs what a single
-- open did before batching.
local s, left, tj, tk, took, w, mine, claims
local made = 0
for i = 1, m do
  local user = ARGV[i]
  local p = prev[i]
  local again = not p and mine and mine[user]
  if p then
    local sep = string.find(p, ':', 1, true)
    out[o + 1] = 3 -- ALREADY_OPENED
    out[o + 2] = tonumber(string.sub(p, 1, sep - 1))
    out[o + 3] = tonumber(string.sub(p, sep + 1))
    o = o + 3
  elseif again then
    out[o + 1] = 3 -- ALREADY_OPENED, earlier in this batch
    out[o + 2] = again
    out[o + 3] = now
    o = o + 3
  else
    if not s then
      s, left = call('HGETALL', KEYS[2]), 0
      for j = 2, #s, 2 do
        local c = tonumber(s[j])
        s[j] = c
        left = left + c
      end
    end
    if left <= 0 and not meta[3] then
      out[o + 1] = 6 -- EMPTY: stock may be elsewhere
      o = o + 1
    elseif left <= 0 then
      -- No claim follows in this batch; the claims made so far are not in
      -- the hash yet.
      claims = claims or call('HLEN', KEYS[3]) + made
      out[o + 1] = 4 -- SOLD_OUT
      out[o + 2] = claims
      o = o + 2
    else
      -- A draw from the bag: every remaining packet is equally likely, so
      -- each amount is picked with probability remaining(amount) / left.
      -- Doubles hold integers below 2^53 exactly, and the bias of the
      -- modulo is below left / 2^53 (< 1e-6 at the largest inventory).
      -- r < left = the sum of the counts, so the walk ends inside s.
      local r = tonumber(ARGV[m + i]) % left
      local j = 2
      while r >= s[j] do
        r = r - s[j]
        j = j + 2
      end
      s[j] = s[j] - 1
      left = left - 1
      if j == tj then
        tk = tk + 1
      elseif not tj then
        tj, tk = j, 1
      else
        took = took or {}
        took[j] = (took[j] or 0) + 1
      end
      local amount = s[j - 1]
      if m == 1 then
        call('HSET', KEYS[3], user, amount .. at)
      else
        w, mine = w or {}, mine or {}
        w[2 * made + 1] = user
        w[2 * made + 2] = amount .. at
        mine[user] = tonumber(amount)
      end
      made = made + 1
      out[o + 1] = 5 -- OK
      out[o + 2] = tonumber(amount)
      o = o + 2
    end
  end
end
if w then
  call('HSET', KEYS[3], unpack(w))
end
-- The stock written back once per amount drawn; an amount at 0 is removed.
if tj then
  for j = 2, #s, 2 do
    local k = j == tj and tk or took and took[j]
    if k then
      if s[j] == 0 then
        call('HDEL', KEYS[2], s[j - 1])
      else
        call('HINCRBY', KEYS[2], s[j - 1], -k)
      end
    end
  end
end
if s then
  out[3] = left
end
return out
