"""Lua shared by the producers and the worker: how a request is cancelled and how a job ends.

A job ends when every one of its requests has an outcome (`sent`, `dead` or `cancelled`); whichever script
records the last outcome (the worker's finish, a claim finding the job cancelled, or `Notifier.cancel`)
marks the job ended, for retention, and queues its callback, all in the same atomic step.
"""

from __future__ import annotations

from producers.models import MAX_RECIPIENTS_PER_REQUEST

#: `cancel_one(job, outcomes, index)`: 1 if request `index` is cancelled now, 0 if it had ended already.
CANCEL_ONE = f"""
local function cancel_one(job, outcomes, index)
  if redis.call('HSETNX', outcomes, index, 'cancelled') == 0 then return 0 end
  redis.call('HINCRBY', job, 'requests_cancelled', 1)
  local total = redis.call('HGET', job, 'recipients_total')
  if total and total ~= '' then
    local per = {MAX_RECIPIENTS_PER_REQUEST}
    local size = math.min(per, tonumber(total) - tonumber(index) * per)
    redis.call('HINCRBY', job, 'recipients_cancelled', size)
  end
  return 1
end
"""

#: `end_job(job, outcomes, ended, callbacks, job_id, at)`: true if the job ends now (every request has an
#: outcome): it is stamped, listed for retention, and its callback (if any) queued for the scheduler.
END_JOB = """
local function end_job(job, outcomes, ended, callbacks, job_id, at)
  if redis.call('HEXISTS', job, 'ended_at') == 1 then return false end
  if redis.call('HLEN', outcomes) < tonumber(redis.call('HGET', job, 'requests_total')) then return false end
  redis.call('HSET', job, 'ended_at', at)
  redis.call('ZADD', ended, at, job_id)
  if (redis.call('HGET', job, 'callback') or '') ~= '' then redis.call('ZADD', callbacks, at, job_id) end
  return true
end
"""

_CANCEL = """
-- KEYS: job, outcomes, lane, handed, ended jobs, callbacks; ARGV: job id, timestamp.
-- Cancels every request not yet handed to a worker; returns {cancelled now, 1 if the job ended}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if redis.call('HEXISTS', KEYS[1], 'ended_at') == 1 then return {0, 0} end
redis.call('HSET', KEYS[1], 'cancelled', '1')
local n = 0
for i = 0, tonumber(redis.call('HGET', KEYS[1], 'requests_total')) - 1 do
  local ref = ARGV[1] .. ':' .. i
  if redis.call('ZREM', KEYS[3], ref) + redis.call('ZREM', KEYS[4], ref) > 0 then
    n = n + cancel_one(KEYS[1], KEYS[2], tostring(i))
  end
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
return {n, end_job(KEYS[1], KEYS[2], KEYS[5], KEYS[6], ARGV[1], ARGV[2]) and 1 or 0}
"""

#: `Notifier.cancel`'s script.
CANCEL = CANCEL_ONE + END_JOB + _CANCEL

#: A producer's enqueue, in one step: the first job of an idempotency key wins; the job's record is written,
#: its staged recipients (written beforehand, in slices, under a key that expires if the producer dies) are
#: committed, and its requests go into their lane, ready at the later of `send_at` and Redis' time.
ENQUEUE = """
-- KEYS: idempotency key (or the job key when there is none), job, chunks, staged chunks, jobs index, lane,
--       lanes
-- ARGV: job id, 1 if there is an idempotency key, requests, send_at (epoch s) or '', lane id, the record
--       (a JSON object of strings). Returns the id of the job the key names (this one, or the first).
if ARGV[2] == '1' then
  local existing = redis.call('GET', KEYS[1])
  if existing then
    redis.call('DEL', KEYS[4])
    return existing
  end
  redis.call('SET', KEYS[1], ARGV[1])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ready = now
if ARGV[4] ~= '' and tonumber(ARGV[4]) > now then ready = tonumber(ARGV[4]) end
local record = {}
for field, value in pairs(cjson.decode(ARGV[6])) do
  record[#record + 1] = field
  record[#record + 1] = value
end
redis.call('HSET', KEYS[2], unpack(record))
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[3])
  redis.call('PERSIST', KEYS[3])
end
local requests = tonumber(ARGV[3])
for first = 0, requests - 1, 500 do
  local batch = {}
  for i = first, math.min(first + 499, requests - 1) do
    batch[#batch + 1] = ready
    batch[#batch + 1] = ARGV[1] .. ':' .. i
  end
  redis.call('ZADD', KEYS[6], unpack(batch))
end
redis.call('ZADD', KEYS[5], now, ARGV[1])
redis.call('SADD', KEYS[7], ARGV[5])
return ARGV[1]
"""
