-- Extend the lease only while this member holds it at this epoch.
-- KEYS: lease, epoch. ARGV: member, epoch, ttl ms. Returns 1, or 0 if it was lost.
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
