#!lua
-- bucket_credit.lua: the credit half of a transfer, at its destination
-- bucket: adds the packets bucket_take.lua took at the source, once per
-- transfer id (the bucket's in set), so a replay by the sweeper after a
-- lost reply changes nothing.
--
-- KEYS[1] the bucket's meta    hash  fence, final, frozen
-- KEYS[2] the bucket's stock   hash  amount -> count
-- KEYS[3] the bucket's in      set   transfer ids already credited
-- ARGV[1] fence  the caller's rebalancing lease
-- ARGV[2] id     the transfer's id
-- ARGV[3] "amount:n,amount:n" as the take returned (may be empty)
--
-- Returns 1 credited, 0 already credited before; -1 bucket not loaded,
-- -2 fence older than one the bucket has seen, -3 bucket frozen (nothing
-- written). Crediting clears 'final': a bucket with stock is not sold out.
local call = redis.call
local f = tonumber(ARGV[1])
if not f or f < 0 or f % 1 ~= 0 or ARGV[2] == '' then
  return redis.error_reply('RPARGS fence, id, amounts')
end
local add = {}
for a, x in string.gmatch(ARGV[3], '(%d+):(%d+)') do
  add[#add + 1] = a
  add[#add + 1] = tonumber(x)
end
local refused = lease(KEYS[1], ARGV[1], true)
if refused then return refused end
if call('SADD', KEYS[3], ARGV[2]) == 0 then
  return 0
end
for j = 1, #add, 2 do
  if add[j + 1] > 0 then
    call('HINCRBY', KEYS[2], add[j], add[j + 1])
  end
end
call('HDEL', KEYS[1], 'final')
return 1
