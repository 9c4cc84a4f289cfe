"""The fleet's tasks, thin on purpose: the work is in `worker.delivery` and `worker.jobs`."""

from __future__ import annotations

import logging
from typing import Any

from producers import keys
from worker import admin
from worker.app import app, resources
from worker.lanes import split_ref

log = logging.getLogger(__name__)


@app.task(name=keys.SEND_TASK)
def send(job_id: str, index: int, lane: str, at: float = 0.0) -> str:
    """Sends one Graph request the scheduler handed out (for its slot `at`); a copy that is not its to send
    does nothing."""
    result = resources().delivery.deliver(job_id, index, lane, at)
    return type(result).__name__


@app.task(name=keys.SEND_MANY_TASK)
def send_many(lane: str, refs: list[str]) -> list[str]:
    """Sends a bundle of one lane's requests (`{job_id}:{index}` refs) the scheduler handed out with pacing
    off, one after another; each at most once, as `send` does. It checks before its first send too: a bundle
    that waited in the broker behind a pause, a cancel or a single send gives its requests back unsent."""
    requests = [split_ref(ref) for ref in refs]
    results = resources().delivery.deliver_many(lane, requests, check_first=True)
    return [type(result).__name__ for result in results]


# Every admin command, as a task an operator or another backend can send through the broker. They run on
# the admin queue, which a pause never stops.


@app.task(ignore_result=False, name="teams_notify.admin.status")
def status_task(job_id: str | None = None) -> dict[str, Any]:
    """`teams-notify status [JOB_ID] --json`."""
    settings = resources().settings
    return admin.job_status(settings, job_id) if job_id else admin.fleet_status(settings)


@app.task(ignore_result=False, name="teams_notify.admin.pause")
def pause_task() -> dict[str, Any]:
    """`teams-notify pause`."""
    return admin.pause(resources().settings)


@app.task(ignore_result=False, name="teams_notify.admin.resume")
def resume_task() -> dict[str, Any]:
    """`teams-notify resume`."""
    return admin.resume(resources().settings)


@app.task(ignore_result=False, name="teams_notify.admin.drain")
def drain_task() -> dict[str, int]:
    """What `teams-notify drain` waits on, now: requests waiting, delayed, handed and in flight."""
    return admin.backlog(resources().settings)


@app.task(ignore_result=False, name="teams_notify.admin.dead_letters_list")
def dead_letters_list_task() -> list[dict[str, Any]]:
    """`teams-notify dead-letters list --json`."""
    return admin.dead_letters(resources().settings)


@app.task(ignore_result=False, name="teams_notify.admin.dead_letters_show")
def dead_letters_show_task(letter_id: str) -> dict[str, Any]:
    """`teams-notify dead-letters show ID`."""
    return admin.dead_letter(resources().settings, letter_id)


@app.task(ignore_result=False, name="teams_notify.admin.dead_letters_replay")
def dead_letters_replay_task(letter_id: str | None = None, teams_app_id: str | None = None) -> list[str]:
    """`teams-notify dead-letters replay (ID | --all) [--teams-app-id X]`; None replays all."""
    return admin.replay(resources().settings, letter_id, teams_app_id)


@app.task(ignore_result=False, name="teams_notify.admin.dead_letters_discard")
def dead_letters_discard_task(letter_id: str | None = None) -> list[str]:
    """`teams-notify dead-letters discard (ID | --all)`; None discards all."""
    return admin.discard(resources().settings, letter_id)


@app.task(ignore_result=False, name="teams_notify.admin.cancel")
def cancel_task(job_id: str) -> dict[str, Any]:
    """`teams-notify cancel JOB_ID --json`."""
    return admin.cancel(resources().settings, job_id)
