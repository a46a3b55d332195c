-- Pub/sub fan-out of a batch of signals in one call: one reply instead of one per PUBLISH,
-- the client's costliest part of publishing (parsing a pipeline's replies). Lossy by design,
-- like any PUBLISH: the stream is the durable copy (append.lua).
--
-- ARGV  pairs: channel, message (in order; published in that order)
--
-- Returns the number of messages published.
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
