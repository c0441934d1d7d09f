-- The pusher's append: one call per batch of entries.
-- KEYS: 1 stream, 2 appended mark, 3 due index
-- ARGV: 1 session id, 2 urgent ('1': due now), 3 max age (s), 4 mark TTL (ms), 5 n of the
--       first entry, 6 number of entries, then for each entry: its field count and its
--       field/value pairs
-- Appends the entries numbered above the mark (a retried append whose reply was lost adds
-- nothing), sets the mark, lowers the session's due time. Returns how many were added.
-- No flags: at Redis's memory limit the append is refused (the pusher spools or holds it).
local mark = tonumber(redis.call('GET', KEYS[2]) or '-1')
local n = tonumber(ARGV[5])
local pos = 7
local added = 0
for _ = 1, tonumber(ARGV[6]) do
  local count = tonumber(ARGV[pos])
  if n > mark then
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, pos + 1, pos + 2 * count))
    added = added + 1
    mark = n
  end
  pos = pos + 1 + 2 * count
  n = n + 1
end
redis.call('SET', KEYS[2], mark, 'PX', ARGV[4])
local t = redis.call('TIME')
local due = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[2] ~= '1' then due = due + tonumber(ARGV[3]) end
redis.call('ZADD', KEYS[3], 'LT', string.format('%.6f', due), ARGV[1])
return added
