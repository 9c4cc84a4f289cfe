"""`Notifier`: what a backend app calls to enqueue a notification and to ask how it went."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import redis

from producers import keys
from producers.connection import DEFAULT_REDIS_URL, connect, redacted
from producers.errors import BrokerUnavailable, InvalidNotification, UnknownJob
from producers.ids import check_tenant_id
from producers.manifest import Manifest
from producers.models import MAX_RECIPIENTS_PER_REQUEST, Endpoint, RecipientsNotification, parse_body
from producers.status import JobStatus

#: The longest idempotency key accepted (it becomes part of a Redis key).
MAX_IDEMPOTENCY_KEY = 256

__all__ = ["DEFAULT_REDIS_URL", "Notifier", "connect", "redacted"]


class Notifier:
    """Enqueues Teams activity-feed notifications for the worker fleet.

    Each `notify_*` validates the body as Graph would, then writes the job record and its requests (into
    the lane of its tenant and class, where the fleet's scheduler finds them) to Redis in one transaction
    and returns the job id. Nothing is enqueued when it raises.
    """

    def __init__(self, redis_url: str | None = None, *, manifest: str | None = None) -> None:
        self._url = redis_url or os.environ.get("TEAMS_NOTIFY_REDIS_URL") or DEFAULT_REDIS_URL
        self._redis = connect(self._url)
        manifest = manifest or os.environ.get("TEAMS_NOTIFY_APP_MANIFEST") or None
        self._manifest = Manifest.load(manifest) if manifest else None

    def __repr__(self) -> str:
        return f"Notifier(redis_url={redacted(self._url)!r})"

    def notify_user(self, user_id: str, body: Any, **options: Any) -> str:
        """POST /users/{id}/teamwork/sendActivityNotification."""
        return self._enqueue(Endpoint.USER, user_id, body, **options)

    def notify_chat(self, chat_id: str, body: Any, **options: Any) -> str:
        """POST /chats/{id}/sendActivityNotification."""
        return self._enqueue(Endpoint.CHAT, chat_id, body, **options)

    def notify_team(self, team_id: str, body: Any, **options: Any) -> str:
        """POST /teams/{id}/sendActivityNotification."""
        return self._enqueue(Endpoint.TEAM, team_id, body, **options)

    def notify_recipients(self, body: Any, **options: Any) -> str:
        """POST /teamwork/sendActivityNotificationToRecipients, in requests of at most 100 recipients."""
        return self._enqueue(Endpoint.RECIPIENTS, None, body, **options)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status as the contract shows it; UnknownJob if no job has this id."""
        try:
            record = cast(dict[str, str], self._redis.hgetall(keys.job(job_id)))
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        if not record:
            raise UnknownJob(f"no job with id {job_id!r}")
        return JobStatus.from_record(job_id, record).model_dump()

    def close(self) -> None:
        """Closes the connection pool."""
        self._redis.close()

    def _enqueue(
        self,
        endpoint: Endpoint,
        target: str | None,
        body: Any,
        *,
        tenant_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        parsed = parse_body(endpoint, body, target)
        if self._manifest is not None:
            self._manifest.check(parsed)
        if tenant_id is not None:
            try:
                if not isinstance(tenant_id, str):
                    raise TypeError(f"must be a string, not {type(tenant_id).__name__}")
                check_tenant_id(tenant_id)
            except (ValueError, TypeError) as exc:
                raise InvalidNotification(f"tenant_id: {exc}", "tenant_id") from None
        if idempotency_key is not None and not (
            isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY
        ):
            raise InvalidNotification(
                f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters",
                "idempotency_key",
            )
        record, chunks = _job_record(endpoint, target, parsed, tenant_id, idempotency_key)
        return self._write(record, chunks, idempotency_key)

    def _write(self, record: dict[str, str], chunks: dict[str, str], idempotency_key: str | None) -> str:
        """Writes record, chunks and requests in one transaction; the first job of a key wins."""
        job_id = record["job_id"]
        lane = record["lane"]
        ready = time.time()
        refs = {keys.request_ref(job_id, index): ready for index in range(int(record["requests_total"]))}
        watched = [keys.idempotency(idempotency_key)] if idempotency_key else []

        winner = [job_id]

        def transaction(pipe: redis.client.Pipeline) -> None:
            if idempotency_key:
                existing = pipe.get(keys.idempotency(idempotency_key))
                if existing:
                    winner[0] = str(existing)
                    return
            pipe.multi()
            if idempotency_key:
                pipe.set(keys.idempotency(idempotency_key), job_id)
            pipe.hset(keys.job(job_id), mapping=cast(Mapping[Any, Any], record))
            if chunks:
                pipe.hset(keys.job_chunks(job_id), mapping=cast(Mapping[Any, Any], chunks))
            pipe.zadd(keys.jobs_index(), {job_id: ready})
            pipe.zadd(keys.lane(lane), cast(Mapping[Any, Any], refs))
            pipe.sadd(keys.lanes(), lane)

        try:
            self._redis.transaction(transaction, *watched)
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        return winner[0]

    def _unavailable(self, exc: Exception) -> BrokerUnavailable:
        return BrokerUnavailable(f"cannot reach Redis at {redacted(self._url)}: {exc}; nothing was enqueued")


def _job_record(
    endpoint: Endpoint,
    target: str | None,
    body: Any,
    tenant_id: str | None,
    idempotency_key: str | None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The job hash and, for a bulk job, its requests' recipients by request index."""
    wire = body.wire()
    chunks: dict[str, str] = {}
    recipients_total = ""
    requests_total = 1
    if isinstance(body, RecipientsNotification):
        recipients = wire.pop("recipients")
        recipients_total = str(len(recipients))
        step = MAX_RECIPIENTS_PER_REQUEST
        chunks = {str(i // step): json.dumps(recipients[i : i + step]) for i in range(0, len(recipients), step)}
        requests_total = len(chunks)
    record = {
        "job_id": str(uuid.uuid4()),
        "endpoint": endpoint.value,
        "target": target or "",
        "path": endpoint.path(target),
        "tenant_id": tenant_id or "",
        "lane": keys.lane_id(tenant_id, bool(recipients_total)),
        "idempotency_key": idempotency_key or "",
        "body": json.dumps(wire),
        "created_at": datetime.now(UTC).isoformat(),
        "updated_at": str(time.time()),
        "requests_total": str(requests_total),
        "requests_sent": "0",
        "requests_dead": "0",
        "recipients_total": recipients_total,
        "recipients_sent": "0",
        "recipients_dead": "0",
    }
    return record, chunks
