#!lua
-- bucket_burn.lua: takes one packet of an amount out of a stock (the pool
-- or a bucket) without giving it to anyone: a claim Redis lost and the
-- reconciler put back into its user's bucket found no packet of its
-- amount there; its packet is taken from here instead.
--
-- KEYS[1] the stock   ARGV[1] amount
-- Returns 1 taken, 0 none of that amount here.
return take1(KEYS[1], ARGV[1])
