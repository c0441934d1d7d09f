#!lua flags=allow-oom
-- Ends a flush whose plan is done (fenced; -2 while a plan is recorded).
-- KEYS: 1 lease, 2 stream, 3 due index, 4 failures, 5 plan
-- ARGV: 1 token, 2 session id, 3 next due ('' for none), 4 id of the last entry the flush
--       read ('' for none), 5 now, 6 release ('1': the lease goes too, the flush's last
--       write), then ids to drop
-- Entries appended after the flush's read make the session due now, so a pusher's own
-- "due now" is never overwritten; an empty stream takes its due entry with it. Returns 0
-- (stream empty), 1 (due at next due) or 2 (due now).
-- <shared fence>: the lease (KEYS[1]) must still hold the caller's token (ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
-- </shared fence>
-- <shared call_in_chunks>
-- redis.call(command, key, ARGV[first], ..., ARGV[last]), in calls of at most 1000 of
-- them: Lua's unpack returns no more values than its C stack holds (LUAI_MAXCSTACK, 8000),
-- and the caller's list may be longer. Nothing for first > last.
local function call_in_chunks(command, key, first, last)
  for i = first, last, 1000 do
    redis.call(command, key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end
-- </shared call_in_chunks>
if redis.call('EXISTS', KEYS[5]) == 1 then return -2 end
call_in_chunks('XDEL', KEYS[2], 7, #ARGV)
redis.call('DEL', KEYS[4])
if ARGV[6] == '1' then redis.call('DEL', KEYS[1]) end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 0
end
if last[1][1] ~= ARGV[4] or ARGV[3] == '' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
  return 2
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
