#!lua flags=allow-oom
-- Counts a failed re-check or blind-upload note; a re-check still at its claimed score is
-- due again after base * 2^(n-1), at most cap.
-- KEYS: 1 the item's queue, 2 failures
-- ARGV: 1 failure field, 2 member, 3 claimed score ('' for a note: not rescheduled),
--       4 error, 5 backoff base and 6 cap (ms)
-- Returns the attempts so far.
-- <shared now_ms>: Redis time, ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- </shared now_ms>
local n, since = 0, now
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then
  local a, b = string.match(old, '^(%d+)|(%d+)|')
  if a then n, since = tonumber(a), tonumber(b) end
end
n = n + 1
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d|%.0f|%s', n, since, ARGV[4]))
if ARGV[3] ~= '' and redis.call('ZSCORE', KEYS[1], ARGV[2]) == ARGV[3] then
  local delay = math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * 2 ^ (n - 1))
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + delay), ARGV[2])
end
return n
