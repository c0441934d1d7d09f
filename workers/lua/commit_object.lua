#!lua flags=allow-oom
-- Commits the plan's head object (fenced): deletes its entries, marks its seqs stored,
-- pops it off the plan. Objects are committed in order: -2 when it is not the head, -3
-- (nothing written) for a seq that is not a number up to MAX_SEQ.
-- KEYS: 1 lease, 2 plan, 3 stream, 4 stored seqs
-- ARGV: 1 token, 2 the recorded object (exactly as stored), 3 bitmap TTL (ms), 4 the
--       number n of ids it deletes, then those n ids, then the seqs of its chunks
-- Returns the number of objects left in the plan.
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
local MAX_SEQ = 2097151  -- backend_hooks.entries.MAX_SEQ (a unit test pins it)
if redis.call('LINDEX', KEYS[2], 0) ~= ARGV[2] then return -2 end
local n = tonumber(ARGV[4])
for i = 5 + n, #ARGV do  -- checked before any write: a script error would write half
  if not string.match(ARGV[i], '^%d+$') or tonumber(ARGV[i]) > MAX_SEQ then return -3 end
end
call_in_chunks('XDEL', KEYS[3], 5, 4 + n)
for i = 5 + n, #ARGV do redis.call('SETBIT', KEYS[4], ARGV[i], 1) end
if #ARGV > 4 + n then redis.call('PEXPIRE', KEYS[4], ARGV[3]) end
redis.call('LPOP', KEYS[2])
return redis.call('LLEN', KEYS[2])
