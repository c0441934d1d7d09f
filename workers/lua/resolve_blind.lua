#!lua flags=allow-oom
-- Drops a blind-upload note whose mark was read, unless a flush noted the same upload again
-- since; for a deleted conversation, has it listed again after the delay.
-- KEYS: 1 notes, 2 re-check queue, 3 failures
-- ARGV: 1 note, 2 its score as read, 3 re-check member ('' when the conversation is not
--       deleted), 4 re-check delay (ms)
-- Returns 1 if the note went.
-- <shared now_ms>: Redis time, ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- </shared now_ms>
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], 'GT', string.format('%.0f', now + tonumber(ARGV[4])), ARGV[3])
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], 'blind:' .. ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
