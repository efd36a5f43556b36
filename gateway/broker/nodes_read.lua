-- nodes_read.lua: the live heartbeats of every node (gateway/broker/redis.c).
-- KEYS[1]: <prefix>nodes, the set of node ids that ever beat;
-- ARGV[1]: <prefix>node:, the prefix of the heartbeat keys (each with a TTL).
-- Returns the heartbeats (JSON texts); ids whose heartbeat expired leave the set.
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local beat = redis.call('GET', ARGV[1] .. id)
  if beat then
    out[#out + 1] = beat
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
