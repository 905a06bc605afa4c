#!lua
-- claim.lua: the opens of a batch of users (one or more) of one campaign,
-- decided atomically in one call. The same source, with BUCKET set true
-- (scripts.go makes that copy), decides them for one bucket of a bucketed
-- campaign (keys.go) on the bucket's slot.
--
-- KEYS[1] rp:{id}:meta    hash  start, end (unix ms); a bucket's: final, frozen
-- KEYS[2] rp:{id}:stock   hash  amount -> remaining count (amounts at 0 are removed)
-- KEYS[3] rp:{id}:claims  hash  user id -> "amount:claimed_at_ms"
-- ARGV    the user ids u_1..u_m (non-empty; 1 <= m <= 1024; a bucket's
--         users only: the caller hashes them), then one random per user
--         r_1..r_m: a uniform integer in [0, 2^53) drawn by the caller
--         (Lua's math.random inside Redis is not a usable source)
--
-- Each user gets the answer a call of their own would give at this moment,
-- in ARGV order, checks in this order: campaign exists, window (by Redis
-- TIME, so every API replica agrees), already opened, stock. A user twice
-- in one batch claims once; the second answer is ALREADY_OPENED with the
-- first's amount. Codes are rain.Outcome values. Reply:
--   {code}                     0 NOT_FOUND, 1 NOT_STARTED or 2 ENDED, for every user
--   {8, k}                     BUCKETED: the campaign's home, whose stock is in k
--                              buckets (nothing claimed: ask the users' buckets)
--   {end_ms, now_ms, per user: 5, amount               OK, claimed at now_ms
--                              3, amount, claimed_at   ALREADY_OPENED
--                              4, claims               SOLD_OUT (users holding a packet)}
-- end_ms lets the api answer repeats and sold-out floods from memory until
-- the window closes; claims tells it whether its copy of the claims is whole.
--
-- A bucket (BUCKET): an empty bucket answers SOLD_OUT only when 'final' is
-- set (a global check found the pool, every bucket and every transfer
-- empty, and nothing has been credited since); otherwise EMPTY (code 6,
-- nothing claimed), and the caller moves stock into the bucket (a refill
-- from the pool, or a steal from the fullest bucket) and asks again. A
-- frozen bucket (its campaign is being rebuilt after a shard lost its data)
-- answers {7} (BUSY) for the whole batch, claiming nothing. SOLD_OUT counts
-- the bucket's claims. After now_ms the reply holds left: the bucket's
-- stock after the batch, or -1 when no user needed it (all ALREADY_OPENED),
-- so the caller refills below a mark.
--
-- Cost: the meta hash, TIME, the users' claims (one HMGET) and the stock
-- are read once per call; the claims are written in one HSET and the stock
-- once per amount drawn, so a batch costs Redis little more than one open.
-- Redis keeps the writes of a script that fails half-way, so every argument
-- is checked before the first write and nothing after it can fail. The
-- shebang makes Redis refuse the whole call up front under OOM (instead of
-- at a write in the middle) and refuse keys of another cluster slot.
local BUCKET = false
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

local meta
if BUCKET then
  meta = call('HMGET', KEYS[1], 'start', 'end', 'final', 'frozen')
else
  meta = call('HMGET', KEYS[1], 'start', 'end', 'buckets')
end
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
if BUCKET and meta[4] then
  return {7} -- BUSY: frozen
end
if not BUCKET and meta[3] and tonumber(meta[3]) > 1 then
  return {8, tonumber(meta[3])} -- BUCKETED: the stock is in the buckets
end

local prev = call('HMGET', KEYS[3], unpack(ARGV, 1, m))
local out, o = {endms, now}, 2
if BUCKET then
  out[3], o = -1, 3
end
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
    if left <= 0 and BUCKET and not meta[3] then
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
if BUCKET and s then
  out[3] = left
end
return out
