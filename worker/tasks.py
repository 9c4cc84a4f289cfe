"""The fleet's tasks, thin on purpose: the work is in `worker.delivery` and `worker.jobs`."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.exceptions import Reject

from producers import keys
from worker import admin
from worker.app import app, resources
from worker.delivery import RetryLater

#: Seconds a task that arrives while the fleet is paused waits before it goes back to the queue.
PAUSED_BACKOFF = 1.0


def _unless_paused() -> None:
    """Hands the message back to the queue while the fleet is paused (queued jobs are kept)."""
    if resources().redis.exists(keys.paused()):
        time.sleep(PAUSED_BACKOFF)
        raise Reject("the fleet is paused", requeue=True)


log = logging.getLogger(__name__)


@app.task(name=keys.DISPATCH_TASK, bind=True)
def dispatch(self: Task, job_id: str) -> int:  # type: ignore[type-arg]
    """Fans a job out into one send task per Graph request (at most 100 recipients each)."""
    _unless_paused()
    res = resources()
    job = res.jobs.load(job_id)
    if job is None:
        log.warning("job %s not found; nothing to dispatch", job_id)
        return 0
    res.jobs.mark_started(job_id)
    ended = res.jobs.ended(job_id)
    pending = [i for i in range(job.requests_total) if i not in ended]
    with app.producer_or_acquire() as producer:
        for index in pending:
            send.apply_async((job_id, index), producer=producer)
    log.info("job %s dispatched: %d requests", job_id, len(pending))
    return len(pending)


@app.task(name=keys.SEND_TASK, bind=True, max_retries=None)
def send(self: Task, job_id: str, index: int) -> str:  # type: ignore[type-arg]
    """Sends one Graph request of a job; transient failures come back later through Celery."""
    _unless_paused()
    result = resources().delivery.deliver(job_id, index)
    if isinstance(result, RetryLater):
        raise self.retry(countdown=result.countdown, exc=result.error)
    return type(result).__name__


# Every admin command, as a task an operator or another backend can send through the broker. They run on
# the admin queue, which a pause never stops.


@app.task(name="teams_notify.admin.status")
def status_task(job_id: str | None = None) -> dict[str, Any]:
    """`teams-notify status [JOB_ID] --json`."""
    settings = resources().settings
    return admin.job_status(settings, job_id) if job_id else admin.fleet_status(settings)


@app.task(name="teams_notify.admin.pause")
def pause_task() -> dict[str, Any]:
    """`teams-notify pause`."""
    return admin.pause(resources().settings)


@app.task(name="teams_notify.admin.resume")
def resume_task() -> dict[str, Any]:
    """`teams-notify resume`."""
    return admin.resume(resources().settings)


@app.task(name="teams_notify.admin.drain")
def drain_task() -> dict[str, int]:
    """What `teams-notify drain` waits on: messages queued and in flight, now."""
    return admin.backlog(resources().settings)


@app.task(name="teams_notify.admin.dead_letters_list")
def dead_letters_list_task() -> list[dict[str, Any]]:
    """`teams-notify dead-letters list --json`."""
    return admin.dead_letters(resources().settings)


@app.task(name="teams_notify.admin.dead_letters_replay")
def dead_letters_replay_task(letter_id: str | None = None, teams_app_id: str | None = None) -> list[str]:
    """`teams-notify dead-letters replay (ID | --all) [--teams-app-id X]`; None replays all."""
    return admin.replay(resources().settings, letter_id, teams_app_id)


@app.task(name="teams_notify.admin.dead_letters_discard")
def dead_letters_discard_task(letter_id: str | None = None) -> list[str]:
    """`teams-notify dead-letters discard (ID | --all)`; None discards all."""
    return admin.discard(resources().settings, letter_id)
