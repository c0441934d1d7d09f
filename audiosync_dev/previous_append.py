"""The pusher's append script of the previous release (GET the mark, XADD, SET the mark,
TIME, ZADD), before it was cut to three commands (git history:
backend_hooks/contract/lua/append.lua). Pushers of that release still run during a rolling
upgrade: the tests hold the new script to its marks, and bench/bench_append.py measures
against it in the same run."""

PREVIOUS_APPEND = """\
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
"""
