#!lua flags=allow-oom
-- Counts a failed flush whoever holds the lease: a flush that failed after its lease ran
-- out (stalled past it) is counted too. With the lease its own, or free (taken again, as a
-- new flush would), it also pushes the due time back: due again after
-- base * 2^(failures - 1), at most cap. When another flush holds the lease it only counts:
-- the due time is that flush's to set.
-- KEYS: 1 lease, 2 failures, 3 due index
-- ARGV: 1 token, 2 session id, 3 error line, 4 now, 5 backoff base and 6 cap (seconds),
--       7 lease (ms)
-- Returns {count, 1 if it holds the lease now}.
local holder = redis.call('GET', KEYS[1])
local count = redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('HSET', KEYS[2], 'last_error', ARGV[3], 'last_at', ARGV[4])
if holder and holder ~= ARGV[1] then return {count, 0} end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[7]) end
local delay = math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * 2 ^ (count - 1))
redis.call('ZADD', KEYS[3], string.format('%.6f', tonumber(ARGV[4]) + delay), ARGV[2])
return {count, 1}
