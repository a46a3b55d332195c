-- Compare-and-set of a new configuration version (common/configstore.py).
--
-- KEYS[1]  the configuration history stream (one entry per version)
-- KEYS[2]  the current-version hash: version, effective_from
-- KEYS[3]  the scored high-water mark: greatest bar open time (ms) the signals stage scored
-- ARGV[1]  expected current version (0 = no version yet)
-- ARGV[2]  effective_from in ms, or '' for the default: the next whole minute after the
--          scored high-water mark (0 when nothing was scored), never before the current
--          version's effective_from
-- ARGV[3]  the validated document (canonical JSON)
-- ARGV[4]  its fingerprint
-- ARGV[5]  who, ARGV[6] when (wall clock, ISO), ARGV[7] the comment
--
-- Returns {'ok', version, effective_from, entry id}, or a refusal that changes nothing:
-- {'conflict', current version}    another change came first (compare-and-set failed);
-- {'past', scored high-water mark}  effective_from is not after what was already scored;
-- {'order', current effective_from} effective_from is before the current version's.
local current = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
local expected = tonumber(ARGV[1])
if current ~= expected then
  return {'conflict', current}
end
local prev_from = tonumber(redis.call('HGET', KEYS[2], 'effective_from') or '0')
local scored = redis.call('GET', KEYS[3])
local from
if ARGV[2] == '' then
  if scored then
    from = math.floor(tonumber(scored) / 60000) * 60000 + 60000
  else
    from = 0
  end
  if from < prev_from then
    from = prev_from
  end
else
  from = tonumber(ARGV[2])
  if scored and from <= tonumber(scored) then
    return {'past', tonumber(scored)}
  end
  if from < prev_from then
    return {'order', prev_from}
  end
end
local version = current + 1
local sfrom = string.format('%d', from)
local entry = redis.call('XADD', KEYS[1], '*', 'version', version, 'effective_from', sfrom,
  'doc', ARGV[3], 'fingerprint', ARGV[4], 'who', ARGV[5], 'at', ARGV[6], 'comment', ARGV[7])
redis.call('HSET', KEYS[2], 'version', version, 'effective_from', sfrom)
return {'ok', version, sfrom, entry}
