-- The pusher's append: one call per batch of entries.
-- KEYS: 1 stream, 2 appended mark, 3 due index
-- ARGV: 1 session id, 2 urgent ('1': due now), 3 max age (s), 4 mark TTL (ms), 5 n of the
--       first entry, 6 number of entries, then for each entry: its field count and its
--       field/value pairs
-- Appends the entries numbered above the mark (a retried append whose reply was lost adds
-- nothing), sets the mark, lowers the session's due time. Returns how many were added.
-- No flags: at Redis's memory limit the append is refused (the pusher spools or holds it).
-- Three commands when an entry is new (bench/bench_append.py measures them): the mark is
-- read and set by one SET ... GET (and put back when a retry of older entries meets a
-- higher one, or when an XADD is refused); the due time is the Redis time of the first added
-- entry's id when its sequence is 0 (XADD '*' began a millisecond: the server's clock, the
-- one every age is measured with); TIME when nothing was added, or when the stream's top id
-- was this millisecond or later (a clock stepped back: its ids run ahead), the earlier of the
-- two.
local n = tonumber(ARGV[5])
local entries = tonumber(ARGV[6])
local last = n + entries - 1
local mark = last
local old
if entries > 0 then
  old = redis.call('SET', KEYS[2], last, 'PX', ARGV[4], 'GET')
  mark = -1
  if old then
    mark = tonumber(old)
    if mark == nil then -- not a number: put it back and add nothing
      redis.call('SET', KEYS[2], old, 'PX', ARGV[4])
      return redis.error_reply('the append mark ' .. KEYS[2] .. ' is not a number')
    end
    if mark > last then redis.call('SET', KEYS[2], old, 'PX', ARGV[4]) end
  end
end
local pos = 7
local added = 0
local id, refused -- id: the first added entry's
for _ = 1, entries do
  local count = tonumber(ARGV[pos])
  if n > mark then
    local reply = redis.pcall('XADD', KEYS[1], '*', unpack(ARGV, pos + 1, pos + 2 * count))
    if type(reply) == 'table' and reply.err then
      -- Refused (the stream key holds another type, ...): the mark goes back to the last
      -- entry added, or to what it was, so that a retry once it is fixed adds the rest.
      if added > 0 then
        redis.call('SET', KEYS[2], n - 1, 'PX', ARGV[4])
      elseif old then
        redis.call('SET', KEYS[2], old, 'PX', ARGV[4])
      else
        redis.call('DEL', KEYS[2])
      end
      refused = reply
      break
    end
    id = id or reply
    added = added + 1
  end
  pos = pos + 1 + 2 * count
  n = n + 1
end
if refused and added == 0 then return refused end
local due
local ms, seq
if id then ms, seq = string.match(id, '^(%d+)-(%d+)$') end
if seq == '0' then -- a new millisecond: the server's clock
  due = tonumber(ms) / 1000
else
  local t = redis.call('TIME')
  due = tonumber(t[1]) + tonumber(t[2]) / 1000000
  if ms then due = math.min(due, tonumber(ms) / 1000) end
end
if ARGV[2] ~= '1' then due = due + tonumber(ARGV[3]) end
redis.call('ZADD', KEYS[3], 'LT', due, ARGV[1]) -- a number: Redis formats it
return refused or added
