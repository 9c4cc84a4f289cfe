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

#: The task that sends one Graph request; the scheduler hands requests to it, producers never call it.
SEND_TASK = "teams_notify.send"
#: The task that sends a bundle of one lane's requests (handed out together when pacing is off).
SEND_MANY_TASK = "teams_notify.send_many"

#: kombu's Redis transport keeps unacknowledged (in-flight or scheduled) messages in this hash.
KOMBU_UNACKED = "unacked"

#: A lane's class: bulk sends, or user, chat and team sends (which Graph limits separately).
BULK = "bulk"
SINGLE = "single"


def job(job_id: str) -> str:
    """The hash holding a job's definition and its counters."""
    return f"{PREFIX}:job:{job_id}"


def job_chunks(job_id: str) -> str:
    """The hash from request index to that request's recipients (JSON), for bulk jobs."""
    return f"{PREFIX}:job:{job_id}:chunks"


def job_staged(job_id: str) -> str:
    """A bulk job's recipients while its enqueue writes them, before it commits (they then become its chunks)."""
    return f"{PREFIX}:job:{job_id}:staged"


def job_outcomes(job_id: str) -> str:
    """The hash from request index to its final outcome (`sent` or `dead`): each request ends once."""
    return f"{PREFIX}:job:{job_id}:outcomes"


def job_request_ids(job_id: str) -> str:
    """The hash from request index to Graph's `request-id` for it, for tracing a request with Microsoft."""
    return f"{PREFIX}:job:{job_id}:request-ids"


def job_overrides(job_id: str) -> str:
    """The hash from request index to fields added to its body on replay (JSON), e.g. `teamsAppId`."""
    return f"{PREFIX}:job:{job_id}:overrides"


def job_attempts(job_id: str) -> str:
    """The hash from request index to the attempts made to send it."""
    return f"{PREFIX}:job:{job_id}:attempts"


def paused() -> str:
    """Set while the fleet is paused."""
    return f"{PREFIX}:paused"


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


def callbacks() -> str:
    """A sorted set of ended jobs whose callback task is yet to be sent, by end time."""
    return f"{PREFIX}:callbacks"


def jobs_ended() -> str:
    """A sorted set of ended job ids by end time: what retention prunes from the jobs index."""
    return f"{PREFIX}:jobs:ended"


# The delivery scheduler's state. Every request of a job is named by a ref, `{job_id}:{index}`, and is in
# exactly one place until it ends: its lane (waiting, or delayed until its score), the lane's handed set
# (a Celery message is on its way), or the lane's in-flight set (leased by a worker sending it).


def lane_id(tenant_id: str | None, bulk: bool) -> str:
    """The lane of a job's requests: by tenant (`-` for the fleet's default tenant) and class."""
    return f"{tenant_id or '-'}:{BULK if bulk else SINGLE}"


def request_ref(job_id: str, index: int) -> str:
    """How lanes, leases and the scheduler name one request of a job."""
    return f"{job_id}:{index}"


def lanes() -> str:
    """The set of lane ids that hold, or may hold, requests."""
    return f"{PREFIX}:lanes"


def lane(lane: str) -> str:
    """A lane: sorted set of request refs scored by the time each may be sent (waiting if past, else delayed)."""
    return f"{PREFIX}:lane:{lane}"


def lane_handed(lane: str) -> str:
    """Refs handed to the broker and not yet taken by a worker, scored by when they are handed again."""
    return f"{PREFIX}:lane:{lane}:handed"


def lane_in_flight(lane: str) -> str:
    """Refs a worker is sending, scored by when the worker's lease runs out."""
    return f"{PREFIX}:lane:{lane}:in-flight"


def lane_hold(lane: str) -> str:
    """Set while Graph's Retry-After holds the lane (its value: the epoch time the hold ends)."""
    return f"{PREFIX}:lane:{lane}:hold"


def lane_pace(lane: str) -> str:
    """A hash of the lane's adaptive pace: `factor` of its limit after a 429, and when it was set (`at`)."""
    return f"{PREFIX}:lane:{lane}:pace"


def lane_recent(lane: str) -> str:
    """A sorted set of the lane's hand-outs of the last seconds, for its current rate."""
    return f"{PREFIX}:lane:{lane}:recent"


def leases() -> str:
    """The hash from a ref in flight to the token of the worker that holds its lease."""
    return f"{PREFIX}:leases"


def scheduler_lock() -> str:
    """The lock the scheduler's leader holds (one worker hands requests out at a time)."""
    return f"{PREFIX}:scheduler"


def fleet() -> str:
    """A hash from worker node name to its slots and when its entry expires (JSON)."""
    return f"{PREFIX}:fleet"


def make_room() -> str:
    """Set by the scheduler's leader while a single send waits for a slot that bulk bundles hold: how many
    bundles should stop early (`worker.bundles`)."""
    return f"{PREFIX}:make-room"


def replication_probe() -> str:
    """What a producer writes just before `WAIT`, on the connection that waits (`connection.confirm_replicated`)."""
    return f"{PREFIX}:replication-probe"


def job_keys(job_id: str) -> list[str]:
    """Every key of one job, for retention: they expire together once the job has ended."""
    return [
        job(job_id),
        job_chunks(job_id),
        job_outcomes(job_id),
        job_request_ids(job_id),
        job_overrides(job_id),
        job_attempts(job_id),
    ]
