#!lua
-- bucket_take.lua: the debit half of a transfer, at its source (the pool,
-- or a bucket at the tail): takes up to n packets out of the source's
-- stock in proportion to its counts, and logs them in the source's out
-- hash until the destination has been credited (bucket_credit.lua) and
-- the entry settled (HDEL). A transfer debits before it credits, so a
-- packet is always in exactly one of: a stock, a claim, an out entry not
-- yet credited.
--
-- KEYS[1] meta of the source's tag   hash  fence, frozen
-- KEYS[2] the source's stock         hash  amount -> count (rp:{id}:pool or a bucket's stock)
-- KEYS[3] the source's out           hash  transfer id -> "dst|amount:n,amount:n"
-- ARGV[1] fence  the caller's rebalancing lease (bucket_lock.lua)
-- ARGV[2] id     the transfer's id, unique per campaign
-- ARGV[3] dst    the destination bucket's index
-- ARGV[4] n      packets wanted (a positive integer)
-- ARGV[5] r      a uniform integer in [0, 2^53) drawn by the caller
--
-- Reply: {taken, "amount:n,..."}; {0, ""} when the source is empty (nothing
-- logged). A retried id returns what it took the first time and takes
-- nothing more. Refusals: {-1} source not loaded, {-2} fence older than
-- one the source has seen (a lease that expired: another process holds
-- a newer one), {-3} source frozen.
--
-- The split (systematic sampling): with S_i = n * (c_1 + ... + c_i) / C,
-- amount i gives floor(S_i + u) - floor(S_{i-1} + u), u = r / 2^53, so its
-- share of the taken packets is its share of the stock in expectation, and
-- each bucket's draw by its own counts stays the campaign's weighted draw
-- in distribution. Doubles carry S_i to about 1e-6 at the largest
-- inventories; the clamps below keep every count in range regardless.
local call = redis.call
local f, n, r = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
if not f or f < 0 or f % 1 ~= 0 or ARGV[2] == '' or not tonumber(ARGV[3])
    or not n or n < 1 or n % 1 ~= 0 or not r or r < 0 or r >= 9007199254740992 then
  return redis.error_reply('RPARGS fence, id, dst, n, random')
end
local refused = lease(KEYS[1], ARGV[1], true)
if refused then return {refused} end
local prev = call('HGET', KEYS[3], ARGV[2])
if prev then
  local bar = string.find(prev, '|', 1, true)
  local list = string.sub(prev, bar + 1)
  local got = 0
  for x in string.gmatch(list, ':(%d+)') do
    got = got + tonumber(x)
  end
  return {got, list}
end
local s = call('HGETALL', KEYS[2])
local total = 0
for j = 2, #s, 2 do
  s[j] = tonumber(s[j])
  total = total + s[j]
end
if total <= 0 then
  return {0, ''}
end
if n > total then
  n = total
end
local u = r / 9007199254740992
local take, cum, prevc, got = {}, 0, 0, 0
for j = 2, #s, 2 do
  cum = cum + s[j]
  local cur
  if cum >= total then
    cur = n
  else
    cur = math.floor(n * cum / total + u)
  end
  local x = math.min(math.max(cur - prevc, 0), s[j], n - got)
  take[j] = x
  got = got + x
  prevc = cur
end
-- Rounding could leave the total short by a packet; give it to the first
-- amounts with some left.
local j = 2
while got < n and j <= #s do
  local x = math.min(s[j] - take[j], n - got)
  take[j] = take[j] + x
  got = got + x
  j = j + 2
end
local parts = {}
for k = 2, #s, 2 do
  local x = take[k]
  if x > 0 then
    if x == s[k] then
      call('HDEL', KEYS[2], s[k - 1])
    else
      call('HINCRBY', KEYS[2], s[k - 1], -x)
    end
    parts[#parts + 1] = s[k - 1] .. ':' .. x
  end
end
local list = table.concat(parts, ',')
call('HSET', KEYS[3], ARGV[2], ARGV[3] .. '|' .. list)
return {got, list}
