#!lua flags=allow-oom
-- Records the plan (fenced; -2 when one is recorded already).
-- KEYS: 1 lease, 2 plan, 3 legacy intent
-- ARGV: 1 token, 2 lease (ms, '' to leave it), then the recorded objects in order
-- The lease is renewed in the same step (the first upload's).
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
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
call_in_chunks('RPUSH', KEYS[2], 3, #ARGV)
redis.call('DEL', KEYS[3])
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
