"""Dead letters: requests that need a person, kept with everything needed to understand and replay them."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import redis
from pydantic import BaseModel

from producers import keys
from producers.errors import UnknownJob
from worker.errors import GraphError
from worker.jobs import Job


class GraphErrorInfo(BaseModel):
    """Graph's error code and message (or ours, when Graph never answered)."""

    code: str | None
    message: str


class RequestInfo(BaseModel):
    """The Graph request that failed, as it would be sent again (without its token)."""

    method: str
    path: str
    body: dict[str, Any]


class DeadLetter(BaseModel):
    """One dead-lettered request, as `teams-notify dead-letters list --json` shows it."""

    id: str
    job_id: str
    request_index: int
    tenant_id: str | None
    reason: str
    status: int | None
    error: GraphErrorInfo
    request: RequestInfo
    attempts: int
    request_id: str | None
    client_request_id: str | None
    created_at: str


def reason_of(exc: Exception) -> str:
    """A short, stable reason an operator can filter on (an exception may name its own: `reason`)."""
    own = getattr(exc, "reason", None)
    if isinstance(own, str) and own:
        return own
    name = type(exc).__name__
    return {
        "Conflict": "conflict",
        "TokenTooShortLived": "token_lifetime",
        "PermanentGraphError": "rejected",
        "AuthError": "auth",
    }.get(name, "retries_exhausted")


def make(
    *, job_id: str, index: int, tenant_id: str | None, path: str, body: dict[str, Any], exc: Exception, attempts: int
) -> DeadLetter:
    """The dead letter of a request that ended with `exc`."""
    graph = exc if isinstance(exc, GraphError) else None
    return DeadLetter(
        id=str(uuid.uuid4()),
        job_id=job_id,
        request_index=index,
        tenant_id=tenant_id,
        reason=reason_of(exc),
        status=graph.status if graph else None,
        error=GraphErrorInfo(
            code=graph.code if graph else type(exc).__name__, message=graph.graph_message if graph else str(exc)
        ),
        request=RequestInfo(method="POST", path=path, body=body),
        attempts=attempts,
        request_id=graph.request_id if graph else None,
        client_request_id=graph.client_request_id if graph else None,
        created_at=datetime.now(UTC).isoformat(),
    )


def encoded(letter: DeadLetter) -> tuple[str, str, float]:
    """What JobStore.finish stores atomically with the request's outcome: id, JSON, score."""
    return letter.id, letter.model_dump_json(), time.time()


_REPLAY = """
-- KEYS: dead-letter hash, dead-letter index, job hash, outcomes, overrides, attempts, lane, lanes, ended jobs,
--       then every key of the job that expires with it
-- ARGV: letter id, request index, recipients in the request, override JSON or '', ref, lane id, job id
-- Returns 1 if replayed, 0 if the letter is gone, -1 if its job is gone (retention ran out).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[4], ARGV[2]) == 'dead' then
  redis.call('HDEL', KEYS[4], ARGV[2])
  redis.call('HINCRBY', KEYS[3], 'requests_dead', -1)
  if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[3], 'recipients_dead', -tonumber(ARGV[3])) end
end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[5], ARGV[2], ARGV[4]) end
redis.call('HDEL', KEYS[6], ARGV[2])
redis.call('HDEL', KEYS[3], 'ended_at')
redis.call('ZREM', KEYS[9], ARGV[7])
for i = 10, #KEYS do redis.call('PERSIST', KEYS[i]) end
redis.call('ZADD', KEYS[7], 'NX', redis.call('TIME')[1], ARGV[5])
redis.call('SADD', KEYS[8], ARGV[6])
return 1
"""


class DeadLetterStore:
    """Reads, replays and discards the dead letters the worker wrote."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._replay = client.register_script(_REPLAY)

    def replay(self, letter: DeadLetter, teams_app_id: str | None = None) -> bool:
        """Sends the request again: it becomes pending in its job and waits in its lane, atomically.

        Returns False if the dead letter was already replayed or discarded.

        Raises:
            UnknownJob: the letter's job has been forgotten (`TEAMS_NOTIFY_RETENTION` ran out).
        """
        recipients = letter.request.body.get("recipients")
        override = json.dumps({"teamsAppId": teams_app_id}) if teams_app_id else ""
        job_id = letter.job_id
        record = cast(dict[str, str], self._redis.hgetall(keys.job(job_id)))
        if not record:
            raise UnknownJob(f"dead letter {letter.id}: its job {job_id} is no longer kept; nothing replayed")
        job = Job.from_record(record)
        replayed = self._replay(
            keys=[
                keys.dead_letters(),
                keys.dead_letters_index(),
                keys.job(job_id),
                keys.job_outcomes(job_id),
                keys.job_overrides(job_id),
                keys.job_attempts(job_id),
                keys.lane(job.lane),
                keys.lanes(),
                keys.jobs_ended(),
                *keys.job_keys(job_id),
                *([keys.idempotency(job.idempotency_key)] if job.idempotency_key else []),
            ],
            args=[
                letter.id,
                letter.request_index,
                len(recipients) if isinstance(recipients, list) else 0,
                override,
                keys.request_ref(job_id, letter.request_index),
                job.lane,
                job_id,
            ],
        )
        if int(replayed) < 0:
            raise UnknownJob(f"dead letter {letter.id}: its job {job_id} is no longer kept; nothing replayed")
        return bool(replayed)

    def discard(self, letter_id: str) -> bool:
        """Drops a dead letter (its request stays dead-lettered in its job); False if there was none."""
        pipe = self._redis.pipeline()
        pipe.hdel(keys.dead_letters(), letter_id)
        pipe.zrem(keys.dead_letters_index(), letter_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def list(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        ids = cast(list[str], self._redis.zrange(keys.dead_letters_index(), 0, -1))
        if not ids:
            return []
        raw = cast(list[str | None], self._redis.hmget(keys.dead_letters(), ids))
        return [DeadLetter.model_validate(json.loads(item)) for item in raw if item]

    def get(self, letter_id: str) -> DeadLetter | None:
        """One dead letter by id."""
        raw = cast(str | None, self._redis.hget(keys.dead_letters(), letter_id))
        return DeadLetter.model_validate(json.loads(raw)) if raw else None

    def count(self) -> int:
        """How many dead letters are waiting."""
        return int(self._redis.zcard(keys.dead_letters_index()))
