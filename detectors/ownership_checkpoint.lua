-- Store the state and ack the entries it covers, only at the current epoch (fencing).
-- KEYS: epoch, checkpoint, ticks stream. ARGV: epoch, state, group, ids to ack...
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
local i = 4
while i <= #ARGV do
  local j = math.min(i + 499, #ARGV)
  redis.call('XACK', KEYS[3], ARGV[3], unpack(ARGV, i, j))
  i = j + 1
end
return 1
