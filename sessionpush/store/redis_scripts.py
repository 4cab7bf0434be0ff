"""The Lua scripts behind every read-then-write step of the Redis store.

A script runs atomically on the server: no other client's command runs
between its first and last line, so each check-and-act below is one step
for every process at once. Each script touches only the keys it is given,
all of one hash slot (see :mod:`sessionpush.store.redis_keys`).

Times travel as strings (Python's ``repr`` of a float is exact; Lua's
numbers are doubles, exact to the microsecond for epoch seconds). A Lua
number returned to the client is cut to an integer, so times come back as
strings too.
"""

from __future__ import annotations

__all__ = [
    "ADD_SUBSCRIPTION",
    "ADD_TIMER",
    "CANCEL_TIMERS",
    "CAP_TAKE_ALL",
    "CLAIM_DUE",
    "CLAIM_SEND",
    "CLAIM_TIMER",
    "DISABLE_SUBSCRIPTION",
    "ERASE_KEYS",
    "ERASE_TIMERS",
    "FINISH",
    "MARK_SUPPRESSED",
    "REMOVE_SUBSCRIPTION",
    "SAVE_RULES",
]

# KEYS: due, data, seqs, seq, by_rule
# ARGV: id, due, triggered_at, timer JSON
# A replaced timer keeps its place among timers due at the same time.
ADD_TIMER = """
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[3], ARGV[1], redis.call('INCR', KEYS[4]))
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return 1
"""

# KEYS: by_rule, due, data, tokens, seqs
# ARGV: triggered_before
# Returns [JSON, seq, JSON, seq, ...] of the removed timers.
CANCEL_TIMERS = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  local data = redis.call('HGET', KEYS[3], id)
  if data then
    out[#out + 1] = data
    out[#out + 1] = redis.call('HGET', KEYS[5], id)
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
end
return out
"""

# KEYS: due, data, tokens, seqs
# ARGV: id
# Take one timer by id and remove it (single process, virtual clock).
CLAIM_TIMER = """
local data = redis.call('HGET', KEYS[2], ARGV[1])
if not data then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return data
"""

# KEYS: due, data, tokens, seqs
# ARGV: limit, lease seconds
# Due means "score <= Redis TIME": the server's clock, the same for every
# process. A claimed timer's score becomes its lease end, so it is due
# again, for anyone, once the lease ran out. Returns
# [lease_until, id, JSON, token, seq, id, JSON, token, seq, ...].
CLAIM_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,
                       'LIMIT', 0, tonumber(ARGV[1]))
local lease_until = now + tonumber(ARGV[2])
local out = {string.format('%.6f', lease_until)}
for _, id in ipairs(ids) do
  local data = redis.call('HGET', KEYS[2], id)
  if data then
    local token = redis.call('HINCRBY', KEYS[3], id, 1)
    redis.call('ZADD', KEYS[1], lease_until, id)
    out[#out + 1] = id
    out[#out + 1] = data
    out[#out + 1] = token
    out[#out + 1] = redis.call('HGET', KEYS[4], id) or '0'
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# KEYS: due, data, tokens, seqs, sent, by_rule
# ARGV: id, token, idempotency TTL in seconds
# The fence: only the newest claimant settles the timer, and only once.
FINISH = """
local current = redis.call('HGET', KEYS[3], ARGV[1])
if not current or current ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('SET', KEYS[5], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# KEYS: one zset per cap, member -> time counted
# ARGV: now, member, has send id ('1'/'0'), then per cap: limit, since, ttl
# Returns -1 when every cap had room (and counted), else the index of the
# first full cap.
CAP_TAKE_ALL = """
if ARGV[3] == '1' then
  local all = true
  for i = 1, #KEYS do
    if not redis.call('ZSCORE', KEYS[i], ARGV[2]) then
      all = false
      break
    end
  end
  if all then return -1 end
end
for i = 1, #KEYS do
  local limit = tonumber(ARGV[1 + 3 * i])
  local since = ARGV[2 + 3 * i]
  if since ~= '-inf' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. since)
  end
  if redis.call('ZCARD', KEYS[i]) >= limit then return i - 1 end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3 + 3 * i]))
end
return -1
"""

# KEYS: the user's suppression hash
# ARGV: rule, at
# Only the latest time is kept: a late or replayed mark does not move it back.
MARK_SUPPRESSED = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"""

# KEYS: subscriptions hash, order zset, order counter, disabled hash
# ARGV: field (device, channel), subscription JSON
# A replaced subscription keeps its place in the list; registering again
# is what enables a disabled one.
ADD_SUBSCRIPTION = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# The stored subscription if its address is still ARGV[2], else nil. The
# address is Subscription.address: the endpoint, else the token, else ''.
# The gateway stores both as strings (transports/subscriptions.py), and
# for strings Python's `or` chain and this one agree.
_STORED_AT_ADDRESS = """
local function stored_at(json, address)
  if not json then return nil end
  local sub = cjson.decode(json)
  local data = sub['data'] or {}
  local found = ''
  for _, name in ipairs({'endpoint', 'token'}) do
    local value = data[name]
    if type(value) == 'string' and value ~= '' then
      found = value
      break
    end
  end
  if found ~= address then return nil end
  return sub
end
"""

# KEYS: subscriptions hash, order zset, disabled hash
# ARGV: field (device, channel), address
# Returns 1 if deleted: a late answer about an old address deletes nothing.
REMOVE_SUBSCRIPTION = (
    _STORED_AT_ADDRESS
    + """
if not stored_at(redis.call('HGET', KEYS[1], ARGV[1]), ARGV[2]) then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""
)

# KEYS: subscriptions hash, disabled hash
# ARGV: field (device, channel), address, reason, registered_before ('' for
# none)
# Returns 1 if disabled. A subscription registered after registered_before
# stays: the provider's answer was about the registration before it.
DISABLE_SUBSCRIPTION = (
    _STORED_AT_ADDRESS
    + """
local sub = stored_at(redis.call('HGET', KEYS[1], ARGV[1]), ARGV[2])
if not sub then return 0 end
if ARGV[4] ~= '' and tonumber(sub['created_at']) > tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
)

# KEYS: the idempotency key's hash
# ARGV: message id, at
# Returns nil when the key was free and is now this message's, else the id
# of the message that claimed it first.
CLAIM_SEND = """
if redis.call('HSETNX', KEYS[1], 'message_id', ARGV[1]) == 0 then
  return redis.call('HGET', KEYS[1], 'message_id')
end
redis.call('HSET', KEYS[1], 'at', ARGV[2])
return false
"""

# KEYS: the rule set hash
# ARGV: source, saved_at, channel
# Version, source and the announcement change together.
SAVE_RULES = """
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'source', ARGV[1], 'saved_at', ARGV[2])
redis.call('PUBLISH', ARGV[3], version)
return version
"""

# KEYS: keys of one hash slot (one user's, or one cap owner's)
# Returns the size of each key before it went: fields of a hash, members of
# a sorted set, 1 for a string, 0 for none. Deleting them in one script
# means no reader sees half a profile, and a send counted meanwhile is
# either in the count or waits until the keys are gone.
ERASE_KEYS = """
local sizes = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  local size = 0
  if kind == 'hash' then
    size = redis.call('HLEN', key)
  elseif kind == 'zset' then
    size = redis.call('ZCARD', key)
  elseif kind ~= 'none' then
    size = 1
  end
  redis.call('DEL', key)
  sizes[i] = size
end
return sizes
"""

# KEYS: due, data, tokens, seqs, then ARGV[3] cancel indexes of the user,
# then idempotency keys of settled timers (``sent``)
# ARGV: app, user, how many cancel indexes
# Returns [how many timers went, session, session, ...]. Every id in the
# user's cancel indexes goes from every index of the shard, claimed or not
# (a claimant then fails its fence); an id whose stored timer now belongs
# to someone else (an id added again with another user) stays theirs.
ERASE_TIMERS = """
local last_index = 4 + tonumber(ARGV[3])
local out = {0}
for i = 5, last_index do
  for _, id in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    local data = redis.call('HGET', KEYS[2], id)
    if data then
      local timer = cjson.decode(data)
      if timer['app'] == ARGV[1] and timer['user'] == ARGV[2] then
        out[1] = out[1] + 1
        out[#out + 1] = timer['session']
        redis.call('ZREM', KEYS[1], id)
        redis.call('HDEL', KEYS[2], id)
        redis.call('HDEL', KEYS[3], id)
        redis.call('HDEL', KEYS[4], id)
      end
    end
  end
  redis.call('DEL', KEYS[i])
end
for i = last_index + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
return out
"""
