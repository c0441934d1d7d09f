#!lua flags=allow-oom
-- Claims a shard's due sessions: each rescheduled to the claim's end, so no other task
-- takes it before its flush holds the lease.
-- KEYS: 1 due index
-- ARGV: 1 now, 2 limit, 3 claim until
-- Returns the sessions claimed.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(members) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member)
end
return members
