#!lua flags=allow-oom
-- Notes an upload made without knowing the conversation's deleted mark (fenced). Its
-- score: now (a flush noting the same upload again moves it, so a resolution read before
-- never drops the newer note).
-- KEYS: 1 lease, 2 blind-upload notes
-- ARGV: 1 token, 2 note
-- <shared fence>: the lease (KEYS[1]) must still hold the caller's token (ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
-- </shared fence>
-- <shared now_ms>: Redis time, ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- </shared now_ms>
redis.call('ZADD', KEYS[2], string.format('%.0f', now), ARGV[2])
return 1
