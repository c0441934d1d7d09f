#!lua flags=allow-oom
-- Moves the oldest entries, up to an id, to the session's quarantine (fenced); when none is
-- left, the plan and the failure count go too.
-- KEYS: 1 lease, 2 stream, 3 quarantine, 4 plan, 5 failures, 6 legacy intent
-- ARGV: 1 token, 2 reason, 3 the last entry id to park, 4 batch size
-- Returns {moved, done}.
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
local batch = redis.call('XRANGE', KEYS[2], '-', ARGV[3], 'COUNT', ARGV[4])
for _, entry in ipairs(batch) do
  move(KEYS[2], KEYS[3], entry[1], ARGV[2], at_ms)
end
if #batch < tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
  return {#batch, 1}
end
return {#batch, 0}
