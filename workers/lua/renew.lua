#!lua flags=allow-oom
-- Renews the lease (fenced).
-- KEYS: 1 lease
-- ARGV: 1 token, 2 lease (ms)
-- <shared fence>: the lease (KEYS[1]) must still hold the caller's token (ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
-- </shared fence>
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
