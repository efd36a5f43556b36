-- presence_touch.lua - sessions of one node present on a channel, added
-- or kept alive (each node runs it every --presence-ttl / 3 for its own).
-- KEYS[1] = <prefix>{C}:presence (sorted set: session -> expiry, Redis ms)
-- KEYS[2] = <prefix>{C}:presence:info (hash: session -> "<node> <sub>")
-- ARGV = TTL (ms), then session, info pairs
local t = redis.call('TIME')
local expires = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
