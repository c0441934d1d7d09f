-- Forgets the session in the quarantine index only if no quarantine began since the index
-- score was read (each one increments the score before it moves anything).
-- KEYS: 1 quarantine index, 2 the session's quarantine
-- ARGV: 1 session id, 2 the index score read before the quarantine was seen empty
if redis.call('XLEN', KEYS[2]) > 0 then return 0 end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
