#!lua flags=allow-oom
-- Drops a re-check carried out, unless it was scheduled again since its claim; clears its
-- failures.
-- KEYS: 1 re-check queue, 2 failures
-- ARGV: 1 member, 2 its claimed score
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('HDEL', KEYS[2], 'recheck:' .. ARGV[1])
return 1
