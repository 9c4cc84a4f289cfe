"""The sweeper dispatches again the jobs whose messages the broker lost, and leaves the others alone."""

from __future__ import annotations

import time

import redis

from producers import Notifier, keys
from tests.unit.notification_examples import USER, bulk_body, user_body
from worker.jobs import JobStore
from worker.sweeper import sweep

STALL = 60.0


def age(store: redis.Redis, job_id: str, seconds: float) -> None:
    store.hset(keys.job(job_id), "updated_at", str(time.time() - seconds))


def test_a_pending_job_quiet_for_longer_than_the_stall_time_is_dispatched_again(
    notifier: Notifier, store: redis.Redis
) -> None:
    stalled = notifier.notify_recipients(bulk_body(250))
    fresh = notifier.notify_user(USER, user_body())
    store.delete(keys.QUEUE)  # the broker lost both dispatch messages
    age(store, stalled, STALL + 1)
    again: list[str] = []

    assert sweep(store, JobStore(store), STALL, again.append) == [stalled]
    assert again == [stalled]
    assert notifier.status(stalled)["state"] == "sending"
    assert fresh not in again


def test_nothing_is_swept_while_jobs_are_queued_or_the_fleet_is_paused(notifier: Notifier, store: redis.Redis) -> None:
    job_id = notifier.notify_user(USER, user_body())
    age(store, job_id, STALL + 1)
    assert sweep(store, JobStore(store), STALL, lambda _: None) == []  # its message is still queued

    store.delete(keys.QUEUE)
    store.set(keys.paused(), "1")
    assert sweep(store, JobStore(store), STALL, lambda _: None) == []


def test_one_worker_sweeps_a_round_and_ended_jobs_are_never_swept(notifier: Notifier, store: redis.Redis) -> None:
    job_id = notifier.notify_user(USER, user_body())
    store.delete(keys.QUEUE)
    age(store, job_id, STALL + 1)
    jobs = JobStore(store)
    assert sweep(store, jobs, STALL, lambda _: None) == [job_id]
    assert sweep(store, jobs, STALL, lambda _: None) == []  # the round's lock is taken

    store.delete(keys.sweep_lock())
    job = jobs.load(job_id)
    assert job is not None
    request = jobs.request(job, 0)
    assert request is not None
    jobs.finish(request, "sent")
    age(store, job_id, STALL + 1)
    assert sweep(store, jobs, STALL, lambda _: None) == []
    assert not store.sismember(keys.active_jobs(), job_id)
