-- history_read.lua - a channel's epoch, top offset and the messages after
-- an offset, in one atomic read (creates the epoch if there is none yet).
-- KEYS[1] = <prefix>{C}:meta, KEYS[2] = <prefix>{C}:stream
-- ARGV = since (offset), limit (0: none), epoch to use if none, meta TTL (s)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local since = tonumber(ARGV[1])
local entries = {}
if tonumber(ARGV[2]) > 0 and top > since then
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+', 'COUNT', ARGV[2])
end
return {epoch, top, entries}
