#!lua flags=allow-oom
-- A flush told that its worker is shutting down gives the session back (fenced): due
-- now, lease released; the plan stays.
-- KEYS: 1 lease, 2 due index
-- ARGV: 1 token, 2 session id, 3 now
-- <shared fence>: the lease (KEYS[1]) must still hold the caller's token (ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
-- </shared fence>
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return redis.call('DEL', KEYS[1])
