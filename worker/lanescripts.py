"""The Lua scripts that move requests between a lane, handed and in flight (see `worker.lanes`).

Each script is one atomic step on Redis' clock (`TIME`), so two copies of a task, a leader and a worker, or a
worker and the reaper can race on a request and only one of them wins.
"""

from producers.scripts import CANCEL_ONE, END_JOB
from worker.ratelimit import TAKE_PERMITS

NOW = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

CLAIM = (
    NOW
    + CANCEL_ONE
    + END_JOB
    + """
-- Takes handed requests of one lane with a lease each (one token for all), or says why not.
-- KEYS: handed, in-flight, leases, paused flag, lane, ended jobs, callbacks, then per request: outcomes,
--       attempts, job
-- ARGV: lease token, lease seconds, then per request: ref, request index, job id.
-- Returns {Redis' time, then per request: status, attempts}.
local paused = redis.call('EXISTS', KEYS[4]) == 1
local out = {t[1] .. '.' .. string.format('%06d', t[2])}
for i = 0, (#ARGV - 2) / 3 - 1 do
  local ref, index, job_id = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  local outcomes, attempts, job = KEYS[8 + 3 * i], KEYS[9 + 3 * i], KEYS[10 + 3 * i]
  local status, count = 'claimed', 0
  if not redis.call('ZSCORE', KEYS[1], ref) then
    status = 'stale'
  else
    redis.call('ZREM', KEYS[1], ref)
    if redis.call('HEXISTS', outcomes, index) == 1 then
      status = 'ended'
    elseif redis.call('HGET', job, 'cancelled') == '1' then
      cancel_one(job, outcomes, index)
      end_job(job, outcomes, KEYS[6], KEYS[7], job_id, tostring(now))
      status = 'cancelled'
    elseif paused then
      redis.call('ZADD', KEYS[5], now, ref)
      status = 'paused'
    else
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ref)
      redis.call('HSET', KEYS[3], ref, ARGV[1])
      if redis.call('EXISTS', job) == 1 then redis.call('HSET', job, 'started', '1') end
      count = redis.call('HINCRBY', attempts, index, 1)
    end
  end
  out[#out + 1] = status
  out[#out + 1] = count
end
return out
"""
)

RENEW = (
    NOW
    + """
-- KEYS: in-flight, leases; ARGV: ref, lease token, lease seconds. 1 while the lease is still this token's.
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

DEFER = (
    NOW
    + """
-- KEYS: in-flight, leases, lane, hold, lanes; ARGV: ref, lease token, delay, hold seconds (0: none), lane id.
-- Returns 1 if the lease was still held, 0 if it had been reaped (the ref then waits at least as long).
local ready = now + tonumber(ARGV[3])
local held = 0
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[3], ready, ARGV[1])
  redis.call('SADD', KEYS[5], ARGV[5])
  held = 1
else
  redis.call('ZADD', KEYS[3], 'XX', 'GT', ready, ARGV[1])
end
local hold = tonumber(ARGV[4])
if hold > 0 and now + hold > tonumber(redis.call('GET', KEYS[4]) or '0') then
  redis.call('SET', KEYS[4], tostring(now + hold), 'PX', math.ceil(hold * 1000))
end
return held
"""
)

REAP = (
    NOW
    + """
-- KEYS: handed, in-flight, leases, lane; ARGV: batch. Moves what ran out back to the lane; returns how many.
local back = 0
for _, ref in ipairs(redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, ARGV[1])) do
  redis.call('ZREM', KEYS[1], ref)
  redis.call('ZADD', KEYS[4], 'NX', now, ref)
  back = back + 1
end
for _, ref in ipairs(redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, ARGV[1])) do
  redis.call('ZREM', KEYS[2], ref)
  redis.call('HDEL', KEYS[3], ref)
  redis.call('ZADD', KEYS[4], 'NX', now, ref)
  back = back + 1
end
return back
"""
)

HAND = (
    NOW
    + TAKE_PERMITS
    + """
-- KEYS: lane, handed, recent, then one key per rate limit; ARGV: ref, hand timeout, rate window, lookahead
-- in microseconds, then the microseconds between permits of each limit. Reserves a slot under every limit
-- and hands the ref out, in one step. Returns {0, 0, slot} if handed (slot: epoch microseconds), {-1, 0, 0}
-- if the ref is not waiting in the lane (gone, or delayed), or {microseconds to wait, index of the limit
-- that holds it back, 0} with nothing taken.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now then return {-1, 0, 0} end
local limit_keys, intervals = {}, {}
for i = 4, #KEYS do
  limit_keys[#limit_keys + 1] = KEYS[i]
  intervals[#intervals + 1] = ARGV[i + 1]
end
local permit = take_permits(limit_keys, intervals, tonumber(ARGV[4]))
if permit[1] > 0 then return permit end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[3])) * 2)
return permit
"""
)

HAND_MANY = (
    NOW
    + """
-- Hands out ready requests of one lane when pacing is off (no permit to take).
-- KEYS: lane, handed, recent; ARGV: hand timeout, rate window, then the refs.
-- Returns the refs handed (those still waiting in the lane, not delayed).
local handed = {}
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[i])
    redis.call('ZADD', KEYS[3], now, ARGV[i])
    handed[#handed + 1] = ARGV[i]
  end
end
if #handed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[2]))
  redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[2])) * 2)
end
return handed
"""
)

FORGET = """
-- KEYS: lanes, lane, handed, in-flight; ARGV: lane id. Drops an empty lane from the set of lanes.
if redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4]) > 0 then return 0 end
return redis.call('SREM', KEYS[1], ARGV[1])
"""
