-- Puts quarantined entries back into the session stream (operators).
-- KEYS: 1 quarantine, 2 stream, 3 due index
-- ARGV: 1 session id, 2 batch size, then the quarantine entry ids to put back (none: the
--       oldest batch)
-- Each goes back to the end of the session stream with its original fields and
-- 'appended_ms' = the time of its first append (the timestamp check measures from it), and
-- leaves the quarantine in the same step. Returns {moved, left}.
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])) do
    ids[#ids + 1] = entry[1]
  end
end
local moved = 0
for _, id in ipairs(ids) do
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found == 1 then
    local fields, out, original, appended = found[1][2], {}, nil, nil
    for j = 1, #fields, 2 do
      local name = fields[j]
      if name == 'entry_id' then original = fields[j + 1] end
      if string.sub(name, 1, 2) == 'f:' then
        if name == 'f:appended_ms' then appended = fields[j + 1] end
        out[#out + 1] = string.sub(name, 3)
        out[#out + 1] = fields[j + 1]
      end
    end
    if appended == nil and original ~= nil then
      out[#out + 1] = 'appended_ms'
      out[#out + 1] = string.match(original, '^(%d+)')
    end
    if #out > 0 then redis.call('XADD', KEYS[2], '*', unpack(out)) end
    redis.call('XDEL', KEYS[1], id)
    moved = moved + 1
  end
end
if moved > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('ZADD', KEYS[3], string.format('%.6f', now), ARGV[1])
end
local left = redis.call('XLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[1]) end
return {moved, left}
