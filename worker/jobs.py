"""Job records in Redis as the worker sees them: definition, requests, outcomes and counters.

The producer writes a job's hash and, for a bulk job, its recipients by request index. The worker ends
each request exactly once (`finish`): the outcome, the job's counters and any dead letter are written by
one Lua script, so a redelivered or duplicated task can never count a request twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis

from producers import keys

Outcome = Literal["sent", "dead"]

#: Seconds a request stays leased to the worker sending it: longer than one task run (3 attempts, 30 s
#: timeouts, permit waits). A copy that finds the lease held comes back when it ends (its holder may be dead).
LEASE_SECONDS = 90

_FINISH = """
-- KEYS: job hash, outcomes hash, dead-letter hash, dead-letter index, request-ids hash, active jobs set
-- ARGV: request index, outcome, recipients in the request, dead-letter id, dead-letter JSON, timestamp,
--       Graph's request-id or '', job id
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[5], ARGV[1], ARGV[7]) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[6])
if redis.call('HLEN', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], 'requests_total')) then
  redis.call('SREM', KEYS[6], ARGV[8])
end
local field = ARGV[2] == 'sent' and 'sent' or 'dead'
redis.call('HINCRBY', KEYS[1], 'requests_' .. field, 1)
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[1], 'recipients_' .. field, ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[4])
end
return 1
"""


@dataclass(frozen=True)
class Job:
    """What a producer enqueued: one Graph action, its target and body, split into requests."""

    job_id: str
    endpoint: str
    target: str | None
    path: str
    tenant_id: str | None
    body: dict[str, Any]
    requests_total: int
    bulk: bool

    @classmethod
    def from_record(cls, record: dict[str, str]) -> Job:
        """Reads the hash the producer wrote."""
        return cls(
            job_id=record["job_id"],
            endpoint=record["endpoint"],
            target=record.get("target") or None,
            path=record["path"],
            tenant_id=record.get("tenant_id") or None,
            body=json.loads(record["body"]),
            requests_total=int(record["requests_total"]),
            bulk=record.get("recipients_total", "") != "",
        )


@dataclass(frozen=True)
class Request:
    """One Graph call of a job: its index, the body to send, and how many users it addresses."""

    job: Job
    index: int
    body: dict[str, Any]
    recipients: int


class JobStore:
    """Reads jobs and records how their requests end."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._finish = client.register_script(_FINISH)

    def load(self, job_id: str) -> Job | None:
        """The job, or None when no job has this id (deleted, or never enqueued)."""
        record = cast(dict[str, str], self._redis.hgetall(keys.job(job_id)))
        return Job.from_record(record) if record else None

    def request(self, job: Job, index: int) -> Request | None:
        """The body of one request of the job (a bulk job's slice of recipients), None if out of range."""
        if not 0 <= index < job.requests_total:
            return None
        override = cast(str | None, self._redis.hget(keys.job_overrides(job.job_id), str(index)))
        body = {**job.body, **json.loads(override)} if override else job.body
        if not job.bulk:
            return Request(job, index, body, 0)
        chunk = cast(str | None, self._redis.hget(keys.job_chunks(job.job_id), str(index)))
        if chunk is None:
            return None
        recipients = json.loads(chunk)
        return Request(job, index, {**body, "recipients": recipients}, len(recipients))

    def mark_started(self, job_id: str) -> None:
        """The job leaves `queued` once its dispatch has run."""
        self._redis.hset(keys.job(job_id), mapping={"started": "1", "updated_at": str(time.time())})

    def defer(self, job_id: str, index: int, until: float) -> None:
        """The request must not be sent before `until` (epoch seconds), whichever copy of it runs."""
        pipe = self._redis.pipeline()
        pipe.hset(keys.job_not_before(job_id), str(index), str(until))
        pipe.hset(keys.job(job_id), "updated_at", str(time.time()))
        pipe.execute()

    def not_before(self, job_id: str, index: int) -> float:
        """The time before which the request must not be sent (0 when none was set)."""
        return float(cast(str | None, self._redis.hget(keys.job_not_before(job_id), str(index))) or 0)

    def stalled(self, older_than: float) -> list[str]:
        """Jobs with requests pending that have made no progress since `older_than` (epoch seconds)."""
        active = sorted(cast(set[str], self._redis.smembers(keys.active_jobs())))
        stalled = []
        for job_id in active:
            updated = cast(str | None, self._redis.hget(keys.job(job_id), "updated_at"))
            if updated is None:
                self._redis.srem(keys.active_jobs(), job_id)  # the job record is gone
            elif float(updated) < older_than:
                stalled.append(job_id)
        return stalled

    def ended(self, job_id: str) -> set[int]:
        """Indexes of the job's requests that have an outcome."""
        return {int(i) for i in cast(list[str], self._redis.hkeys(keys.job_outcomes(job_id)))}

    def outcome(self, job_id: str, index: int) -> str | None:
        """How the request ended, or None while it has not."""
        return cast(str | None, self._redis.hget(keys.job_outcomes(job_id), str(index)))

    def attempt(self, job_id: str, index: int) -> int:
        """Counts one more attempt of the request and returns the count."""
        return int(self._redis.hincrby(keys.job_attempts(job_id), str(index), 1))

    def attempts(self, job_id: str, index: int) -> int:
        """Attempts made so far."""
        return int(cast(str | None, self._redis.hget(keys.job_attempts(job_id), str(index))) or 0)

    def finish(
        self,
        request: Request,
        outcome: Outcome,
        dead_letter: tuple[str, str, float] | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Ends a request once, keeping Graph's request-id; False if it had already ended (a duplicate)."""
        job_id = request.job.job_id
        letter_id, letter, at = dead_letter or ("", "", time.time())
        ended = self._finish(
            keys=[
                keys.job(job_id),
                keys.job_outcomes(job_id),
                keys.dead_letters(),
                keys.dead_letters_index(),
                keys.job_request_ids(job_id),
                keys.active_jobs(),
            ],
            args=[request.index, outcome, request.recipients, letter_id, letter, at, request_id or "", job_id],
        )
        return bool(ended)

    def request_ids(self, job_id: str) -> dict[int, str]:
        """Graph's request-id of each ended request that got an answer, by request index."""
        found = cast(dict[str, str], self._redis.hgetall(keys.job_request_ids(job_id)))
        return {int(index): request_id for index, request_id in found.items()}

    def lease_left(self, job_id: str, index: int) -> float:
        """Seconds until another worker's lease on the request runs out (0 if none is held)."""
        return max(int(self._redis.ttl(keys.request_lease(job_id, index))), 0)

    @contextmanager
    def lease(self, job_id: str, index: int, token: str) -> Iterator[bool]:
        """Holds the request's lease while it is sent; yields False if another worker holds it."""
        key = keys.request_lease(job_id, index)
        held = bool(self._redis.set(key, token, nx=True, ex=LEASE_SECONDS))
        try:
            yield held
        finally:
            if held and self._redis.get(key) == token:
                self._redis.delete(key)
