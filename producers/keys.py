"""Every Redis key, queue and task name the producers and the worker share.

The producers write job records and Celery messages by these names; the worker reads them. Keeping them in
one module is what lets `producers` enqueue by task name without importing the worker.
"""

from __future__ import annotations

#: Prefix of every key teams-notify writes, so that a shared Redis can be inspected and cleaned safely.
PREFIX = "teams-notify"

#: The Celery queue the fleet consumes (a Redis list of that name, as kombu's Redis transport keeps it).
QUEUE = "teams-notify"

#: The queue of admin tasks (pause, resume, replay, ...): never paused, so `resume` always reaches the fleet.
ADMIN_QUEUE = "teams-notify.admin"

#: Task names: producers enqueue by name, the worker registers under the same names.
DISPATCH_TASK = "teams_notify.dispatch"
SEND_TASK = "teams_notify.send"

#: kombu's Redis transport keeps unacknowledged (in-flight or scheduled) messages in this hash.
KOMBU_UNACKED = "unacked"


def job(job_id: str) -> str:
    """The hash holding a job's definition and its counters."""
    return f"{PREFIX}:job:{job_id}"


def job_chunks(job_id: str) -> str:
    """The hash from request index to that request's recipients (JSON), for bulk jobs."""
    return f"{PREFIX}:job:{job_id}:chunks"


def job_outcomes(job_id: str) -> str:
    """The hash from request index to its final outcome (`sent` or `dead`): each request ends once."""
    return f"{PREFIX}:job:{job_id}:outcomes"


def job_request_ids(job_id: str) -> str:
    """The hash from request index to Graph's `request-id` for it, for tracing a request with Microsoft."""
    return f"{PREFIX}:job:{job_id}:request-ids"


def job_not_before(job_id: str) -> str:
    """The hash from request index to the epoch time before which it must not be sent (Retry-After)."""
    return f"{PREFIX}:job:{job_id}:not-before"


def active_jobs() -> str:
    """The set of jobs with requests still pending, which the sweeper watches for lost messages."""
    return f"{PREFIX}:jobs:active"


def sweep_lock() -> str:
    """Held by the one worker sweeping for stalled jobs this round."""
    return f"{PREFIX}:sweep"


def job_overrides(job_id: str) -> str:
    """The hash from request index to fields added to its body on replay (JSON), e.g. `teamsAppId`."""
    return f"{PREFIX}:job:{job_id}:overrides"


def job_attempts(job_id: str) -> str:
    """The hash from request index to the attempts made to send it."""
    return f"{PREFIX}:job:{job_id}:attempts"


def paused() -> str:
    """Set while the fleet is paused."""
    return f"{PREFIX}:paused"


def request_lease(job_id: str, index: int) -> str:
    """The lease a worker holds while it sends one request, so a redelivered duplicate waits its turn."""
    return f"{PREFIX}:lease:{job_id}:{index}"


def idempotency(key: str) -> str:
    """Maps a producer's idempotency key to the job it created."""
    return f"{PREFIX}:idempotency:{key}"


def jobs_index() -> str:
    """A sorted set of job ids by creation time, for listing and retention."""
    return f"{PREFIX}:jobs"


def dead_letters() -> str:
    """The hash from dead-letter id to its entry (JSON)."""
    return f"{PREFIX}:dead-letters"


def dead_letters_index() -> str:
    """A sorted set of dead-letter ids by creation time."""
    return f"{PREFIX}:dead-letters:index"
