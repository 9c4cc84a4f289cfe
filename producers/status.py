"""A job's status as the contract shows it, computed from the counters in its Redis hash."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

State = Literal["scheduled", "queued", "sending", "completed", "completed_with_errors", "cancelled"]
#: States in which a job will change no more.
ENDED_STATES = frozenset({"completed", "completed_with_errors", "cancelled"})


class Counts(BaseModel):
    """Requests (Graph calls) or recipients (addressed users) of a job, by how far they got."""

    total: int
    sent: int
    dead_lettered: int
    cancelled: int
    pending: int

    @classmethod
    def of(cls, total: int, sent: int, dead: int, cancelled: int) -> Counts:
        """Counts whose pending part is what has been neither sent, dead-lettered nor cancelled."""
        return cls(
            total=total,
            sent=sent,
            dead_lettered=dead,
            cancelled=cancelled,
            pending=max(total - sent - dead - cancelled, 0),
        )


class JobStatus(BaseModel):
    """`notifier.status(job_id)` and `teams-notify status JOB_ID --json`."""

    job_id: str
    state: State
    requests: Counts
    recipients: Counts | None
    scheduled_for: str | None = None

    @classmethod
    def from_record(cls, job_id: str, record: dict[str, str], now: float | None = None) -> JobStatus:
        """Reads the job hash written by the producer and counted by the worker."""
        fields = ("total", "sent", "dead", "cancelled")
        requests = Counts.of(*(int(record.get(f"requests_{k}") or 0) for k in fields))
        recipients = None
        if record.get("recipients_total", "") != "":
            recipients = Counts.of(*(int(record.get(f"recipients_{k}") or 0) for k in fields))
        scheduled_for = record.get("scheduled_for") or None
        return cls(
            job_id=job_id,
            state=_state(record, requests, scheduled_for, time.time() if now is None else now),
            requests=requests,
            recipients=recipients,
            scheduled_for=scheduled_for,
        )

    def document(self) -> dict[str, Any]:
        """The contract's JSON document: `scheduled_for` only when the job was given a time."""
        document = self.model_dump()
        if document["scheduled_for"] is None:
            del document["scheduled_for"]
        return document


def _state(record: dict[str, str], requests: Counts, scheduled_for: str | None, now: float) -> State:
    if requests.pending == 0:
        if record.get("cancelled") == "1":
            return "cancelled"
        return "completed_with_errors" if requests.dead_lettered else "completed"
    if record.get("started") == "1" or requests.sent or requests.dead_lettered or requests.cancelled:
        return "sending"
    if scheduled_for and datetime.fromisoformat(scheduled_for).timestamp() > now:
        return "scheduled"
    return "queued"
