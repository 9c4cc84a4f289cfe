"""A job's status as the contract shows it, computed from the counters in its Redis hash."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

State = Literal["queued", "sending", "completed", "completed_with_errors"]


class Counts(BaseModel):
    """Requests (Graph calls) or recipients (addressed users) of a job, by how far they got."""

    total: int
    sent: int
    dead_lettered: int
    pending: int

    @classmethod
    def of(cls, total: int, sent: int, dead: int) -> Counts:
        """Counts whose pending part is what has neither been sent nor dead-lettered."""
        return cls(total=total, sent=sent, dead_lettered=dead, pending=max(total - sent - dead, 0))


class JobStatus(BaseModel):
    """`notifier.status(job_id)` and `teams-notify status JOB_ID --json`."""

    job_id: str
    state: State
    requests: Counts
    recipients: Counts | None

    @classmethod
    def from_record(cls, job_id: str, record: dict[str, str]) -> JobStatus:
        """Reads the job hash written by the producer and counted by the worker."""
        requests = Counts.of(*(int(record.get(f"requests_{k}", 0)) for k in ("total", "sent", "dead")))
        recipients = None
        if record.get("recipients_total", "") != "":
            recipients = Counts.of(*(int(record.get(f"recipients_{k}", 0)) for k in ("total", "sent", "dead")))
        state: State
        if requests.pending == 0:
            state = "completed_with_errors" if requests.dead_lettered else "completed"
        elif record.get("started") == "1" or requests.sent or requests.dead_lettered:
            state = "sending"
        else:
            state = "queued"
        return cls(job_id=job_id, state=state, requests=requests, recipients=recipients)
