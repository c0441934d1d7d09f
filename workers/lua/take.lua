#!lua flags=allow-oom
-- Takes a lease-like key when free (SET NX PX): 1 if taken.
-- KEYS: 1 a lease-like key (a flush's lease, a shard's dispatch hold, the sweep's mark)
-- ARGV: 1 token, 2 TTL (ms)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
