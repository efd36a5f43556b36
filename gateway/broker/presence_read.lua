-- presence_read.lua - a channel's present sessions on every node, after
-- dropping (and announcing as left) those whose node stopped refreshing them.
-- KEYS[1] = <prefix>{C}:presence, KEYS[2] = <prefix>{C}:presence:info
-- ARGV[1] = the pub/sub channel <prefix>C, for "!leave <session> <node> <sub>"
-- Returns session, info, session, info, ...
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #gone do
  local info = redis.call('HGET', KEYS[2], gone[i])
  redis.call('ZREM', KEYS[1], gone[i])
  redis.call('HDEL', KEYS[2], gone[i])
  if info then
    redis.call('PUBLISH', ARGV[1], '!leave ' .. gone[i] .. ' ' .. info)
  end
end
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for i = 1, #ids do
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call('HGET', KEYS[2], ids[i]) or ''
end
return out
