-- history_publish.lua - publish with history, atomically (wsgate's Redis
-- engine runs it with EVALSHA; backends may run it too, see the README).
-- KEYS[1] = <prefix>{C}:meta  (hash: epoch, top; outlives the stream)
-- KEYS[2] = <prefix>{C}:stream
-- ARGV = pub/sub channel <prefix>C, payload (JSON), history size,
--        stream TTL (s), meta TTL (s), epoch to use if the channel has none
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  -- a new history: drop a stream left from an older epoch
  epoch = ARGV[6]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local top = redis.call('HINCRBY', KEYS[1], 'top', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], top .. '-0', 'd', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], '#' .. top .. ' ' .. epoch .. ' ' .. ARGV[2])
return {top, epoch}
