"""What became of a request a send task was handed: sent, dead-lettered, skipped or deferred."""

from __future__ import annotations

from dataclasses import dataclass

from worker import deadletters
from worker.errors import AuthError, GraphError, Throttled, TokenTooShortLived, Unauthorized
from worker.graph import GraphResult


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
