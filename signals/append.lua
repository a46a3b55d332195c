-- Atomic check-and-append of signals: each signal id appears on the stream at most once.
--
-- KEYS[1]  the signals stream
-- KEYS[2]  the id index: a sorted set of signal ids scored by the bar's open time (ms);
--          same Cluster slot as KEYS[1] (its hash tag is the stream's name)
-- KEYS[3]  the live configuration's current-version hash (common/config_propose.lua)
-- KEYS[4]  the scored high-water mark: greatest bar open time (ms) scored so far
-- ARGV[1]  retention of the index in ms (0 = keep forever): ids whose open time is older than
--          the newest open time in this call minus the retention are dropped
-- ARGV[2]  approximate MAXLEN cap of the stream (0 = none; a last resort, trimming normally
--          follows the consumer groups)
-- ARGV[3]  the configuration version the batch was scored with ('' = do not check)
-- ARGV[4]  the greatest bar open time of the batch's events ('' = none)
-- ARGV[5..] groups of five per signal: id, open_time_ms, v, json, channel (the pub/sub
--          channel to PUBLISH the json on once appended; '' = do not publish)
--
-- Returns 'stale' and changes nothing when a newer configuration version exists than the
-- one the batch was scored with (the worker reloads and scores again). Otherwise it raises
-- the scored mark to ARGV[4] (so no new version can take effect at or before a bar already
-- scored: config_propose.lua refuses it) and returns 'ok' followed by one element per
-- signal: the new stream entry id, or 0 for an id already present (a redelivered pattern
-- event, or a second worker racing on the same event). Each newly appended signal with a
-- channel is published on it, in order, after its XADD: lossy by design like any PUBLISH (the
-- stream is the durable copy), and sent once with the append instead of in a second call.
local retention = tonumber(ARGV[1])
local maxlen = tonumber(ARGV[2])
if ARGV[3] ~= '' then
  local current = tonumber(redis.call('HGET', KEYS[3], 'version') or '0')
  if current ~= tonumber(ARGV[3]) then
    return {'stale', current}
  end
end
if ARGV[4] ~= '' then
  local scored = redis.call('GET', KEYS[4])
  if not scored or tonumber(scored) < tonumber(ARGV[4]) then
    redis.call('SET', KEYS[4], ARGV[4])
  end
end
local out = {'ok'}
local newest = nil
for i = 5, #ARGV, 5 do
  local id, open_time, v, d, channel = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('ZSCORE', KEYS[2], id) then
    out[#out + 1] = 0
  else
    local entry
    if maxlen > 0 then
      entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'v', v, 'id', id, 'd', d)
    else
      entry = redis.call('XADD', KEYS[1], '*', 'v', v, 'id', id, 'd', d)
    end
    redis.call('ZADD', KEYS[2], open_time, id)
    if channel ~= '' then
      redis.call('PUBLISH', channel, d)
    end
    out[#out + 1] = entry
  end
  local t = tonumber(open_time)
  if newest == nil or t > newest then
    newest = t
  end
end
if newest ~= nil and retention > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', newest - retention))
end
return out
