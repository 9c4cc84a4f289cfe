"""What became of a request a send task was handed (sent, dead-lettered, skipped or deferred), and the
log line of each Graph call."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from worker import deadletters
from worker.errors import AuthError, GraphError, Throttled, TokenTooShortLived, Unauthorized
from worker.graph import GraphResult
from worker.jobs import Request

#: The line of each Graph call (under the sender's name, which operators filter on).
calls = logging.getLogger("worker.delivery")


@dataclass(frozen=True)
class Sent:
    """Graph accepted the request."""

    result: GraphResult


@dataclass(frozen=True)
class DeadLettered:
    """The request needs a person; its dead letter says why."""

    letter: deadletters.DeadLetter


@dataclass(frozen=True)
class Skipped:
    """Nothing sent: the request was not this copy's to send (`stale`, `ended`, `paused`), or its job is gone."""

    why: str


@dataclass(frozen=True)
class Deferred:
    """A transient failure: the request waits in its lane `delay` seconds, then goes out again."""

    delay: float
    error: Exception


Result = Sent | DeadLettered | Skipped | Deferred


def retry_cause(exc: GraphError | AuthError) -> str:
    """Why a request is retried, as the `cause` of `teams_notify_retries`."""
    if isinstance(exc, AuthError | Unauthorized | TokenTooShortLived):
        return "auth"
    if isinstance(exc, Throttled):
        return "throttled"
    return "server_error" if exc.status is not None else "transport"


def log_call(request: Request, tenant: str, attempt: int, seconds: float, outcome: GraphResult | GraphError) -> None:
    """One line for each Graph call, accepted or not, with its ids as fields when logs are JSON."""
    sent = isinstance(outcome, GraphResult)
    fields = {
        "job_id": request.job.job_id,
        "request_index": request.index,
        "tenant": tenant,
        "endpoint": request.job.endpoint,
        "status": outcome.status,
        "request_id": outcome.request_id,
        "client_request_id": outcome.client_request_id,
        "attempt": attempt,
        "duration_ms": round(seconds * 1000, 1),
    }
    calls.info(
        "request %s/%s %s: HTTP %s, request-id %s, client-request-id %s, attempt %d, %.0f ms",
        request.job.job_id,
        request.index,
        "sent" if sent else "refused by Graph" if outcome.status is not None else "not answered",
        outcome.status if outcome.status is not None else "-",
        outcome.request_id,
        outcome.client_request_id,
        attempt,
        seconds * 1000,
        extra=fields,
    )
