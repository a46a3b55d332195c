-- Append one TickBatch entry and remember, in the same atomic step, the highest trade id
-- written per (exchange, symbol): "written" and "remembered" can never disagree, whatever
-- moment ingest is killed at.
--
-- KEYS[1]  the partition's tick stream (ticks:{p})
-- KEYS[2]  the partition's last-id hash (ingest:last_id:{p}); same hash tag, same slot
-- ARGV[1]  approximate MAXLEN cap of the stream (0 = none)
-- ARGV[2]  n: the number of stream fields
-- ARGV[3 .. 2 + 2n]  the entry's fields and values
-- ARGV[3 + 2n]  the last ids, ONE argument (ingest.lastwritten.batch_last_ids): a line
--               "<hash field>\t<trade id>:<trade time ns>\n" per symbol; may be empty
--
-- A line only raises the remembered id (a late trade filling an earlier gap must not move
-- it back). Ids are compared as Lua numbers: exact below 2^53, far above any exchange's ids.
-- Returns the new entry id.
local maxlen = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local fields = {}
for i = 3, 2 + 2 * n do
  fields[#fields + 1] = ARGV[i]
end
local entry
if maxlen > 0 then
  entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
else
  entry = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
local packed = ARGV[3 + 2 * n] or ''
for field, value, tid in string.gmatch(packed, '([^\t\n]+)\t((%d+):%d+)\n') do
  local id = tonumber(tid)
  local current = redis.call('HGET', KEYS[2], field)
  if not current or tonumber(string.match(current, '^%d+')) < id then
    redis.call('HSET', KEYS[2], field, value)
  end
end
return entry
