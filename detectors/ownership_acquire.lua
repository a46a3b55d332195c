-- Take the lease of a free partition and bump its fencing epoch in the same step.
-- KEYS: lease, epoch. ARGV: member, ttl ms. Returns the new epoch, or 0 if the lease is held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
