"""The Lua scripts of the delivery outbox: each state change and its index moves at once.

Keys are passed in (built by :class:`worker.keys.Keys`); ``CLAIM_DUE`` also gets the
delivery-hash prefix (``keys.delivery("")``) since the ids it claims are only known inside
the script. States are the strings of :class:`worker.delivery.queue.State`.
"""

# KEYS: delivery hash, job deliveries list, due zset, disabled set
# ARGV: id, now, url, disabled reason, field, value, field, value, ...
ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('RPUSH', KEYS[2], ARGV[1])
if redis.call('SISMEMBER', KEYS[4], ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'disabled', 'last_error', ARGV[4],
             'finished_at', ARGV[2], 'next_at', '')
else
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
end
return 1
"""

# KEYS: due zset
# ARGV: now, limit, lease expiry, claim token, delivery key prefix
# -> flat list id, attempt number, id, attempt number, ...
CLAIM_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local dk = ARGV[5] .. id
  if redis.call('HGET', dk, 'state') ~= 'pending' then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    local n = redis.call('HINCRBY', dk, 'attempts', 1)
    redis.call('HSET', dk, 'claim', ARGV[4], 'claimed_until', ARGV[3])
    table.insert(out, id)
    table.insert(out, tostring(n))
  end
end
return out
"""

# KEYS: delivery hash, due zset
# ARGV: now, lease expiry, claim token, id  -> attempt number, or false
CLAIM_ONE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return false end
local until_s = tonumber(redis.call('HGET', KEYS[1], 'claimed_until') or '') or 0
if until_s > tonumber(ARGV[1]) then return false end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'claim', ARGV[3], 'claimed_until', ARGV[2])
return n
"""

# KEYS: delivery hash, log list, due zset, failed zset, disabled set
# ARGV: token, log entry, new state, next_at, now, last status, last error, id, url,
#       log cap, disable endpoint ('1'/'0')  -> 1 applied, 0 claim lost (logged only)
FINISH = """
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[10]), -1)
if ARGV[11] == '1' then redis.call('SADD', KEYS[5], ARGV[9]) end
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'claim', '', 'claimed_until', '', 'last_status', ARGV[6],
           'last_error', ARGV[7], 'last_attempt_at', ARGV[5], 'state', ARGV[3])
if ARGV[3] == 'pending' then
  redis.call('HSET', KEYS[1], 'next_at', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[8])
  return 1
end
redis.call('HSET', KEYS[1], 'next_at', '', 'finished_at', ARGV[5])
redis.call('ZREM', KEYS[3], ARGV[8])
if ARGV[3] == 'delivered' then redis.call('HSET', KEYS[1], 'delivered_at', ARGV[5]) end
if ARGV[3] == 'failed' then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[8])
else
  redis.call('ZREM', KEYS[4], ARGV[8])
end
return 1
"""

# KEYS: delivery hash, due zset, failed zset, disabled set
# ARGV: now, id, force ('1'/'0')  -> 1 replayed, 0 unknown or endpoint disabled
REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local url = redis.call('HGET', KEYS[1], 'url')
if redis.call('SISMEMBER', KEYS[4], url) == 1 then
  if ARGV[3] ~= '1' then return 0 end
  redis.call('SREM', KEYS[4], url)
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'next_at', ARGV[1],
           'claim', '', 'claimed_until', '', 'last_error', '', 'finished_at', '')
redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""
