"""`Notifier`: what a backend app calls to enqueue a notification and to ask how it went."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import redis

from producers import chunks as chunk_codec
from producers import keys, options
from producers.connection import DEFAULT_REDIS_URL, confirm_replicated, connect, redacted
from producers.errors import BrokerUnavailable, UnknownJob
from producers.manifest import Manifest
from producers.models import MAX_RECIPIENTS_PER_REQUEST, Endpoint, NotificationBody, parse_body, parse_bulk
from producers.scripts import CANCEL, ENQUEUE
from producers.status import JobStatus

#: The keyword options of every `notify_*`.
OPTIONS = ("tenant_id", "idempotency_key", "send_at", "callback", "callback_queue")
#: Times an enqueue is written again when a failover lost it before a replica confirmed it.
REWRITES = 3
#: Recipient slices staged per round trip, and how long staged slices wait for their enqueue to commit.
STAGE_SLICES = 200
STAGE_EXPIRY = 3600

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
        self._enqueue_script = self._redis.register_script(ENQUEUE)
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
        unknown = sorted(set(given) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (options: {', '.join(OPTIONS)})")
        chunks: dict[str, str] = {}
        parsed: NotificationBody
        if endpoint is Endpoint.RECIPIENTS:
            parsed, recipients, plain = parse_bulk(body)  # fast, without a model per recipient
            chunks = _slices(recipients, plain)
            total = str(len(recipients))
        else:
            parsed, total = parse_body(endpoint, body, target), ""
        if self._manifest is not None:
            self._manifest.check(parsed)
        checked = options.check(**given)
        record = _job_record(endpoint, target, parsed, checked, recipients_total=total, requests=len(chunks) or 1)
        return self._write(record, chunks, checked)

    def _write(self, record: dict[str, str], chunks: dict[str, str], checked: options.Options) -> str:
        """Stages the recipients in slices, then commits the job in one script; the first job of a key wins.

        A job is enqueued whole or not at all: staged recipients nobody committed expire by themselves.
        Through Sentinels the job must also be on a replica (WAIT) before the producer is told it is
        enqueued; a failover in between may have lost it, and then it is written again (same id).
        """
        job_id = record["job_id"]
        idempotency = checked.idempotency_key
        script_keys = [
            keys.idempotency(idempotency) if idempotency else keys.job(job_id),
            keys.job(job_id),
            keys.job_chunks(job_id),
            keys.job_staged(job_id),
            keys.jobs_index(),
            keys.lane(record["lane"]),
            keys.lanes(),
        ]
        args = [
            job_id,
            "1" if idempotency else "0",
            record["requests_total"],
            checked.send_at or "",
            record["lane"],
            json.dumps(record),  # one argument rather than 20: packing arguments is what an enqueue costs most
        ]
        try:
            for _ in range(REWRITES):
                self._stage(job_id, chunks)
                winner = str(self._enqueue_script(keys=script_keys, args=args))
                if confirm_replicated(self._redis, keys.job(winner)):
                    return winner
        except redis.RedisError as exc:
            self._unstage(job_id)
            raise self._unavailable(exc) from None
        raise BrokerUnavailable(f"Redis at {redacted(self._url)} lost the job in failovers {REWRITES} times over")

    def _unstage(self, job_id: str) -> None:
        """Drops what a failed enqueue staged (if Redis is away, the staged key expires by itself)."""
        with contextlib.suppress(redis.RedisError):
            self._redis.delete(keys.job_staged(job_id))

    def _stage(self, job_id: str, chunks: dict[str, str]) -> None:
        """Writes a bulk job's slices under a key nothing reads yet, a few hundred per round trip, so that no
        single write holds Redis for long; the key expires unless the enqueue commits it."""
        staged = keys.job_staged(job_id)
        items = list(chunks.items())
        for first in range(0, len(items), STAGE_SLICES):
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(staged, mapping=dict(items[first : first + STAGE_SLICES]))
            pipe.expire(staged, STAGE_EXPIRY)
            pipe.execute()

    def _unavailable(self, exc: Exception) -> BrokerUnavailable:
        return BrokerUnavailable(f"cannot reach Redis at {redacted(self._url)}: {exc}; nothing was enqueued")


def _slices(recipients: list[dict[str, Any]], plain: bool) -> dict[str, str]:
    """A bulk job's recipients as stored, by request index: 100 to a slice, compact when plain."""
    step = MAX_RECIPIENTS_PER_REQUEST
    if plain:
        ids = [r["userId"] for r in recipients]
        return {str(i // step): chunk_codec.encode_ids(ids[i : i + step]) for i in range(0, len(ids), step)}
    return {str(i // step): chunk_codec.encode(recipients[i : i + step]) for i in range(0, len(recipients), step)}


def _job_record(
    endpoint: Endpoint,
    target: str | None,
    body: NotificationBody,
    checked: options.Options,
    *,
    recipients_total: str,
    requests: int,
) -> dict[str, str]:
    """The job hash: what to send, where, and its counters."""
    wire = body.wire()
    wire.pop("recipients", None)
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
        "requests_total": str(requests),
        "recipients_total": recipients_total,
    }
    # Counters start absent (0 to every reader and to HINCRBY), and so do options not given.
    return {name: value for name, value in record.items() if value}
