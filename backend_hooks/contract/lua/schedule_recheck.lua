#!lua flags=allow-oom
-- A deleted conversation's re-check (the reader's delete, a flush's).
-- KEYS: 1 re-check queue
-- ARGV: 1 member, 2 delay (ms)
-- Due at Redis TIME + delay, or, when it is due that late or later already, 1 ms after its
-- time (one re-check at the latest time asked covers them all). Always a new score: a run
-- carrying the re-check out has pushed it to the end of its claim and removes it afterwards
-- only if that score is unchanged, so a request made while it lists (for attempts in
-- flight then) is never removed with it.
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if old and old >= due then due = old + 1 end
redis.call('ZADD', KEYS[1], string.format('%.0f', due), ARGV[1])
return 1
