#!lua flags=allow-oom
-- Forgets a first-release intent (fenced).
-- KEYS: 1 lease, 2 legacy intent
-- ARGV: 1 token
-- <shared fence>: the lease (KEYS[1]) must still hold the caller's token (ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
-- </shared fence>
return redis.call('DEL', KEYS[2])
