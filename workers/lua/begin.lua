#!lua flags=allow-oom
-- Takes the lease (when free) and reads, in one step, what a flush starts from.
-- KEYS: 1 lease, 2 plan, 3 legacy intent, 4 stream, 5 stored seqs, 6 appended mark
-- ARGV: 1 token, 2 lease (ms), 3 read limit
-- Returns {1, plan, intent, entries (up to the limit), stored bitmap, 1 if the pusher's
-- appended mark exists else 0}; {0} when the lease is held.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local plan = redis.call('LRANGE', KEYS[2], 0, -1)
local intent = redis.call('GET', KEYS[3]) or ''
local entries = {}
if #plan == 0 and intent == '' then
  entries = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', ARGV[3])
end
local stored = redis.call('GET', KEYS[5]) or ''
return {1, plan, intent, entries, stored, redis.call('EXISTS', KEYS[6])}
