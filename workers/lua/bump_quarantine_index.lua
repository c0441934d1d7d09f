#!lua flags=allow-oom
-- Counts a quarantine about to begin.
-- KEYS: 1 quarantine index
-- ARGV: 1 session id
return redis.call('ZINCRBY', KEYS[1], 1, ARGV[1])
