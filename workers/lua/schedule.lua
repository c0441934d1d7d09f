#!lua flags=allow-oom
-- Lowers (or sets, when absent) a session's due time.
-- KEYS: 1 due index
-- ARGV: 1 session id, 2 due time
return redis.call('ZADD', KEYS[1], 'LT', ARGV[2], ARGV[1])
