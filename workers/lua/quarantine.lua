#!lua flags=allow-oom
-- Moves entries to the session's quarantine (fenced); -2 when a plan is recorded.
-- KEYS: 1 lease, 2 stream, 3 quarantine, 4 plan
-- ARGV: 1 token, then (entry id, reason) pairs
-- Returns how many entries moved.
-- <shared fence>: the lease (KEYS[1]) must still hold the caller's token (ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
-- </shared fence>
-- <shared move>
-- Moves one stream entry to a quarantine stream: its fields as they were, each prefixed
-- with 'f:', after 'reason', 'entry_id' and 'at_ms'. Returns 1 if the entry was there.
local function move(stream, quarantine, id, reason, at_ms)
  local found = redis.call('XRANGE', stream, id, id)
  if #found == 0 then return 0 end
  local out = {'reason', reason, 'entry_id', id, 'at_ms', at_ms}
  local fields = found[1][2]
  for j = 1, #fields, 2 do
    out[#out + 1] = 'f:' .. fields[j]
    out[#out + 1] = fields[j + 1]
  end
  redis.call('XADD', quarantine, '*', unpack(out))
  redis.call('XDEL', stream, id)
  return 1
end
local t = redis.call('TIME')
local at_ms = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
-- </shared move>
if redis.call('EXISTS', KEYS[4]) == 1 then return -2 end
local moved = 0
for i = 2, #ARGV, 2 do
  moved = moved + move(KEYS[2], KEYS[3], ARGV[i], ARGV[i + 1], at_ms)
end
return moved
