#!lua flags=allow-oom
-- Keeps (or takes, when free) a shard's dispatch hold for a running task: 0 when another
-- task holds it.
-- KEYS: 1 dispatch hold
-- ARGV: 1 token, 2 hold (ms)
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
