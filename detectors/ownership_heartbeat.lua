-- Refresh (ARGV[2] == "1") or remove this member, drop members silent for longer than the
-- TTL (Redis server time, ms). KEYS: members zset. ARGV: member, alive, ttl ms. Returns members.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
