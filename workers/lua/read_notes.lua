#!lua flags=no-writes
-- The oldest blind-upload notes after the first offset, with their scores exactly as
-- stored.
-- KEYS: 1 notes
-- ARGV: 1 limit, 2 offset
local first = tonumber(ARGV[2])
return redis.call('ZRANGE', KEYS[1], first, first + tonumber(ARGV[1]) - 1, 'WITHSCORES')
