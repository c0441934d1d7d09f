#!lua flags=allow-oom
-- Releases a lease-like key if it still holds the token.
-- KEYS: 1 a lease-like key (a flush's lease, a shard's dispatch hold)
-- ARGV: 1 token
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
