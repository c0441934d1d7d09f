#!lua flags=allow-oom
-- Claims a shard's due re-checks: each pushed to now + claim.
-- KEYS: 1 re-check queue
-- ARGV: 1 limit, 2 claim (ms)
-- Returns {new score, members}.
-- <shared now_ms>: Redis time, ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- </shared now_ms>
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
local claimed = string.format('%.0f', now + tonumber(ARGV[2]))
for _, member in ipairs(members) do redis.call('ZADD', KEYS[1], 'XX', claimed, member) end
return {claimed, members}
