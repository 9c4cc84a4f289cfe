"""Job records in Redis as the worker sees them: definition, requests, outcomes and counters.

The producer writes a job's hash and, for a bulk job, its recipients by request index. The worker ends
each request exactly once (`finish`): the outcome, the job's counters and any dead letter are written by
one Lua script, so a redelivered or duplicated task can never count a request twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import redis

from producers import chunks, keys
from producers.scripts import END_JOB

Outcome = Literal["sent", "dead"]

#: Job definitions a process keeps in memory.
JOB_CACHE = 4096

_FINISH = (
    END_JOB
    + """
-- KEYS: job hash, outcomes, dead-letter hash, dead-letter index, request-ids, lane, handed, in-flight,
--       leases, ended jobs, callbacks
-- ARGV: request index, outcome, recipients in the request, dead-letter id, dead-letter JSON, timestamp,
--       Graph's request-id or '', job id, ref
-- Returns 0 if the request had already ended, 1 if it ends now, 2 if the job ends with it.
redis.call('ZREM', KEYS[6], ARGV[9])
redis.call('ZREM', KEYS[7], ARGV[9])
redis.call('ZREM', KEYS[8], ARGV[9])
redis.call('HDEL', KEYS[9], ARGV[9])
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[5], ARGV[1], ARGV[7]) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[6])
local field = ARGV[2] == 'sent' and 'sent' or 'dead'
redis.call('HINCRBY', KEYS[1], 'requests_' .. field, 1)
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[1], 'recipients_' .. field, ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[4])
end
return end_job(KEYS[1], KEYS[2], KEYS[10], KEYS[11], ARGV[8], ARGV[6]) and 2 or 1
"""
)


#: What `JobStore.finish` answers when the request it ended was its job's last.
JOB_ENDED = 2


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
    lane: str
    idempotency_key: str | None = None
    created_at: float | None = None  # epoch seconds the producer enqueued it

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
            lane=record.get("lane") or keys.lane_id(record.get("tenant_id"), record.get("recipients_total", "") != ""),
            idempotency_key=record.get("idempotency_key") or None,
            created_at=_epoch(record.get("created_at")),
        )

    @property
    def single_user(self) -> str | None:
        """The one user a single send notifies, for the per-user limit (None for bulk and members sends)."""
        if self.endpoint == "user":
            return self.target
        recipient = self.body.get("recipient")
        user = recipient.get("userId") if isinstance(recipient, dict) else None
        return user if isinstance(user, str) else None


def _epoch(stamp: str | None) -> float | None:
    """An ISO 8601 time as epoch seconds; None when absent or unreadable."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


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
        self._cache: OrderedDict[str, Job] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._finish = client.register_script(_FINISH)

    def load(self, job_id: str) -> Job | None:
        """The job, or None when no job has this id (deleted, or never enqueued).

        A job's definition never changes once enqueued (what changes, counters and overrides, is read
        apart), so the last `JOB_CACHE` loaded are kept in memory: a send or a hand-out reads it once.
        """
        with self._cache_lock:
            job = self._cache.get(job_id)
            if job is not None:
                self._cache.move_to_end(job_id)
                return job
        record = cast(dict[str, str], self._redis.hgetall(keys.job(job_id)))
        if not record:
            return None  # not kept: a job may be enqueued under this id yet
        job = Job.from_record(record)
        with self._cache_lock:
            self._cache[job_id] = job
            while len(self._cache) > JOB_CACHE:
                self._cache.popitem(last=False)
        return job

    def pipeline(self) -> redis.client.Pipeline:
        """A pipeline on the store, to read a request with other things in one round trip."""
        return self._redis.pipeline(transaction=False)

    def request(self, job: Job, index: int) -> Request | None:
        """The body of one request of the job (a bulk job's slice of recipients), None if out of range."""
        pipe = self.pipeline()
        self.queue_request(pipe, job, index)
        return self.read_request(job, index, pipe.execute() if len(pipe) else [])

    @staticmethod
    def queue_request(pipe: redis.client.Pipeline, job: Job, index: int) -> None:
        """Adds the reads of `request` to a pipeline: its overrides and, for a bulk job, its recipients."""
        if 0 <= index < job.requests_total:
            pipe.hget(keys.job_overrides(job.job_id), str(index))
            if job.bulk:
                pipe.hget(keys.job_chunks(job.job_id), str(index))

    @staticmethod
    def read_request(job: Job, index: int, replies: list[Any]) -> Request | None:
        """`request` from the replies to `queue_request`."""
        if not 0 <= index < job.requests_total:
            return None
        override, *chunks_read = cast(list[str | None], replies)
        body = {**job.body, **json.loads(override)} if override else job.body
        if not job.bulk:
            return Request(job, index, body, 0)
        chunk = chunks_read[0]
        if chunk is None:
            return None
        recipients = chunks.decode(chunk)
        return Request(job, index, {**body, "recipients": recipients}, len(recipients))

    def ended(self, job_id: str) -> set[int]:
        """Indexes of the job's requests that have an outcome."""
        return {int(i) for i in cast(list[str], self._redis.hkeys(keys.job_outcomes(job_id)))}

    def outcome(self, job_id: str, index: int) -> str | None:
        """How the request ended, or None while it has not."""
        return cast(str | None, self._redis.hget(keys.job_outcomes(job_id), str(index)))

    def uncount_attempt(self, job_id: str, index: int) -> None:
        """Takes back the attempt a claim counted, for a failure that was not the request's (an Entra outage)."""
        self._redis.hincrby(keys.job_attempts(job_id), str(index), -1)

    def attempts(self, job_id: str, index: int) -> int:
        """Attempts made so far."""
        return int(cast(str | None, self._redis.hget(keys.job_attempts(job_id), str(index))) or 0)

    def finish(
        self,
        request: Request,
        outcome: Outcome,
        dead_letter: tuple[str, str, float] | None = None,
        request_id: str | None = None,
    ) -> int:
        """Ends a request once, keeping Graph's request-id, and takes it out of the scheduler's sets.

        Returns 0 if it had already ended (a duplicate), 1 if it ends now, 2 if its job ends with it.
        """
        job = request.job
        job_id = job.job_id
        letter_id, letter, at = dead_letter or ("", "", time.time())
        ended = self._finish(
            keys=[
                keys.job(job_id),
                keys.job_outcomes(job_id),
                keys.dead_letters(),
                keys.dead_letters_index(),
                keys.job_request_ids(job_id),
                keys.lane(job.lane),
                keys.lane_handed(job.lane),
                keys.lane_in_flight(job.lane),
                keys.leases(),
                keys.jobs_ended(),
                keys.callbacks(),
            ],
            args=[
                request.index,
                outcome,
                request.recipients,
                letter_id,
                letter,
                at,
                request_id or "",
                job_id,
                keys.request_ref(job_id, request.index),
            ],
        )
        return int(ended)

    def request_ids(self, job_id: str) -> dict[int, str]:
        """Graph's request-id of each ended request that got an answer, by request index."""
        found = cast(dict[str, str], self._redis.hgetall(keys.job_request_ids(job_id)))
        return {int(index): request_id for index, request_id in found.items()}
