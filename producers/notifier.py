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

from producers import keys, options
from producers.connection import DEFAULT_REDIS_URL, confirm_replicated, connect, redacted
from producers.errors import BrokerUnavailable, UnknownJob
from producers.manifest import Manifest
from producers.models import MAX_RECIPIENTS_PER_REQUEST, Endpoint, RecipientsNotification, parse_body
from producers.scripts import CANCEL
from producers.status import JobStatus

#: The keyword options of every `notify_*`.
OPTIONS = ("tenant_id", "idempotency_key", "send_at", "callback", "callback_queue")
#: Times an enqueue is written again when a failover lost it before a replica confirmed it.
REWRITES = 3

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
        self._cancel = self._redis.register_script(CANCEL)
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
        return JobStatus.from_record(job_id, record).document()

    def close(self) -> None:
        """Closes the connection pool."""
        self._redis.close()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancels a job: requests not yet handed to Graph are never sent; those in flight finish.

        Returns the job's status (state `cancelled` once nothing is in flight). Idempotent; an ended job
        is left as it is. Raises UnknownJob if no job has this id.
        """
        try:
            lane = cast(str | None, self._redis.hget(keys.job(job_id), "lane"))
            if lane is None:
                raise UnknownJob(f"no job with id {job_id!r}")
            self._cancel(
                keys=[
                    keys.job(job_id),
                    keys.job_outcomes(job_id),
                    keys.lane(lane),
                    keys.lane_handed(lane),
                    keys.jobs_ended(),
                    keys.callbacks(),
                ],
                args=[job_id, time.time()],
            )
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        return self.status(job_id)

    def _enqueue(self, endpoint: Endpoint, target: str | None, body: Any, **given: Any) -> str:
        parsed = parse_body(endpoint, body, target)
        if self._manifest is not None:
            self._manifest.check(parsed)
        unknown = sorted(set(given) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (options: {', '.join(OPTIONS)})")
        checked = options.check(**given)
        record, chunks = _job_record(endpoint, target, parsed, checked)
        return self._write(record, chunks, checked)

    def _write(self, record: dict[str, str], chunks: dict[str, str], checked: options.Options) -> str:
        """Writes record, chunks and requests in one transaction; the first job of a key wins."""
        job_id = record["job_id"]
        lane = record["lane"]
        idempotency_key = checked.idempotency_key
        try:
            seconds, micros = self._redis.time()  # scores are on Redis' clock, whatever this host's says
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        now = seconds + micros / 1e6
        ready = max(checked.send_at or now, now)
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
            pipe.zadd(keys.jobs_index(), {job_id: now})
            pipe.zadd(keys.lane(lane), cast(Mapping[Any, Any], refs))
            pipe.sadd(keys.lanes(), lane)

        try:
            # Through Sentinels the job must also be on a replica (WAIT) before the producer is told it is
            # enqueued; a failover in between may have lost it, and then it is written again (same id).
            for _ in range(REWRITES):
                winner[0] = job_id
                self._redis.transaction(transaction, *watched)
                if confirm_replicated(self._redis, keys.job(winner[0])):
                    return winner[0]
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        raise BrokerUnavailable(f"Redis at {redacted(self._url)} lost the job in failovers {REWRITES} times over")

    def _unavailable(self, exc: Exception) -> BrokerUnavailable:
        return BrokerUnavailable(f"cannot reach Redis at {redacted(self._url)}: {exc}; nothing was enqueued")


def _job_record(
    endpoint: Endpoint, target: str | None, body: Any, checked: options.Options
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
        "tenant_id": checked.tenant_id or "",
        "lane": keys.lane_id(checked.tenant_id, bool(recipients_total)),
        "idempotency_key": checked.idempotency_key or "",
        "scheduled_for": checked.scheduled_for,
        "callback": checked.callback or "",
        "callback_queue": checked.callback_queue or "",
        "body": json.dumps(wire),
        "created_at": datetime.now(UTC).isoformat(),
        "updated_at": str(time.time()),
        "requests_total": str(requests_total),
        "requests_sent": "0",
        "requests_dead": "0",
        "recipients_total": recipients_total,
        "recipients_sent": "0",
        "recipients_dead": "0",
        "requests_cancelled": "0",
        "recipients_cancelled": "0",
    }
    return record, chunks
