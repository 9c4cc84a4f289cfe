"""The scheduler on a real Redis: one leader, lanes served in turn under Graph's limits and the fleet's free slots.

Tests call `step()` (announce, lead, pump) or `pump()` directly; what the leader publishes is recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from producers import Notifier, keys
from tests.unit.notification_examples import TENANT, USER, bulk_body, user_body
from worker import lanes as lanes_module
from worker import scheduler as scheduler_module
from worker.config import GRAPH_RATE_LIMITS
from worker.jobs import JobStore
from worker.lanes import LOOKAHEAD, LaneStore
from worker.ratelimit import PACING_MARGIN, RateLimiter
from worker.scheduler import FOLLOWER_POLL, Fleet, Scheduler

APP = "a3111f15-658e-457c-9689-fd20fe907330"
OTHER_TENANT = "fabrikam.onmicrosoft.com"
OTHER_USER = "7155e3c8-175e-4311-97ef-572edc3aa3db"
Published = list[tuple[str, int, str]]


def scheduler(
    store: redis.Redis,
    published: Published,
    limiter: RateLimiter | None = None,
    *,
    node: str = "worker-a",
    slots: int = 32,
    retention: float = 3600.0,
    publish: Callable[[str, int, str, float], None] | None = None,
    call_back: Callable[[str, str | None, dict[str, Any]], None] | None = None,
) -> Scheduler:
    def record(job_id: str, index: int, lane: str, at: float) -> None:
        assert (at > 0) == (limiter is not None), "a paced hand-out carries its slot, an unpaced one none"
        published.append((job_id, index, lane))

    return Scheduler(
        store,
        JobStore(store),
        limiter,
        publish or record,
        call_back or (lambda task, queue, status: None),
        node=node,
        slots=slots,
        default_tenant=TENANT,
        retention=retention,
    )


def limiter(store: redis.Redis, **limits: float) -> RateLimiter:
    return RateLimiter(store, {**GRAPH_RATE_LIMITS, **limits}, APP)


def lane_of(store: redis.Redis, job_id: str) -> str:
    job = JobStore(store).load(job_id)
    assert job is not None
    return job.lane


def finish(store: redis.Redis, job_id: str, index: int = 0) -> int:
    """A worker ends the request (sent)."""
    jobs = JobStore(store)
    job = jobs.load(job_id)
    assert job is not None
    request = jobs.request(job, index)
    assert request is not None
    return jobs.finish(request, "sent", request_id="graph-request-id")


def until(condition: Callable[[], bool]) -> None:
    """Waits (a few seconds at most) for a thread to get somewhere."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "it never happened"
        time.sleep(0.01)


@pytest.fixture
def published() -> Published:
    return []


def test_only_one_of_two_schedulers_leads_and_hands_out(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    followed: Published = []
    first, second = scheduler(store, published), scheduler(store, followed, node="worker-b")
    job_id = notifier.notify_user(USER, user_body())

    first.step()
    assert second.step() == FOLLOWER_POLL

    assert (first.leading, second.leading) == (True, False)
    assert published == [(job_id, 0, lane_of(store, job_id))]
    assert followed == []
    assert Fleet(store).slots() == {"worker-a": 32, "worker-b": 32}


def test_another_scheduler_leads_once_the_leader_stops(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    followed: Published = []
    first, second = scheduler(store, published), scheduler(store, followed, node="worker-b")
    first.start()
    until(lambda: first.leading)

    first.stop()
    until(lambda: not first.leading)
    second.step()
    job_id = notifier.notify_user(USER, user_body())
    second.step()

    assert second.leading
    assert followed == [(job_id, 0, lane_of(store, job_id))]
    assert "worker-a" not in Fleet(store).slots()


def test_a_stopped_scheduler_ends_its_thread_and_lets_go_of_the_lead(store: redis.Redis, published: Published) -> None:
    leader = scheduler(store, published)
    leader.start()
    until(lambda: leader.leading)

    leader.stop()
    leader.join(timeout=5)

    assert not leader.is_alive()
    assert store.get(keys.scheduler_lock()) is None


def test_another_scheduler_leads_once_the_leaders_lock_runs_out(
    store: redis.Redis, notifier: Notifier, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "LEADER_TTL", 0.2)
    followed: Published = []
    first, second = scheduler(store, published), scheduler(store, followed, node="worker-b")
    first.step()
    time.sleep(0.3)  # the leader is stuck (or dead) longer than its lock lasts

    second.step()
    job_id = notifier.notify_user(USER, user_body())
    assert first.step() == FOLLOWER_POLL
    second.step()

    assert (first.leading, second.leading) == (False, True)
    assert published == []
    assert followed == [(job_id, 0, lane_of(store, job_id))]


def test_lanes_are_served_round_robin(store: redis.Redis, notifier: Notifier, published: Published) -> None:
    one = notifier.notify_recipients(bulk_body(300), tenant_id=TENANT)
    other = notifier.notify_recipients(bulk_body(300), tenant_id=OTHER_TENANT)

    scheduler(store, published).step()

    lanes = [lane for _, _, lane in published]
    assert len(lanes) == 6
    assert lanes[0::2] == [lanes[0]] * 3
    assert lanes[1::2] == [lanes[1]] * 3
    assert {lanes[0], lanes[1]} == {lane_of(store, one), lane_of(store, other)}
    assert [index for job_id, index, _ in published if job_id == one] == [0, 1, 2]


def test_a_single_send_behind_a_large_bulk_job_of_its_tenant_is_handed_out_on_the_next_step(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    leader = scheduler(store, published, limiter(store))
    bulk = notifier.notify_recipients(bulk_body(5_000), tenant_id=TENANT)
    leader.step()
    assert [job_id for job_id, _, _ in published] == [bulk]  # the tenant's bulk limit is spent

    single = notifier.notify_user(USER, user_body(), tenant_id=TENANT)
    leader.step()

    assert (single, 0, lane_of(store, single)) in published[1:]
    assert store.zcard(keys.lane(lane_of(store, bulk))) >= 48


def test_a_lane_is_handed_only_what_its_rate_limit_permits_and_the_rest_waits(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    leader = scheduler(store, published, limiter(store, bulk_tenant=4, bulk_app=1e6))
    one = notifier.notify_recipients(bulk_body(1_000), tenant_id=TENANT)
    other = notifier.notify_recipients(bulk_body(1_000), tenant_id=OTHER_TENANT)

    leader.step()
    assert sorted(job_id for job_id, _, _ in published) == sorted([one, other])
    assert store.zcard(keys.lane(lane_of(store, one))) == 9

    time.sleep(0.3)  # one permit interval of 4 a second
    leader.step()
    assert sorted(job_id for job_id, _, _ in published) == sorted([one, one, other, other])


def test_a_request_held_back_by_its_users_limit_steps_aside_for_the_next_users(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    leader = scheduler(store, published, limiter(store, single_tenant=1e6, single_app=1e6, user_minute=10))
    first = notifier.notify_user(USER, user_body())
    again = notifier.notify_user(USER, user_body())
    other = notifier.notify_user(OTHER_USER, user_body())
    lanes = LaneStore(store)

    leader.step()

    assert [job_id for job_id, _, _ in published] == [first, other]
    assert store.zscore(keys.lane(lane_of(store, again)), keys.request_ref(again, 0)) > lanes.now() + 5


def test_free_slots_cap_what_is_handed_out(store: redis.Redis, notifier: Notifier, published: Published) -> None:
    leader = scheduler(store, published, slots=2)
    job_id = notifier.notify_recipients(bulk_body(500))

    leader.step()
    leader.step()
    assert len(published) == 2

    Fleet(store).announce("worker-b", 1)
    leader.step()
    assert len(published) == 3

    finish(store, job_id, published[0][1])  # a worker ends a request: its slot is free again
    leader.step()
    assert len(published) == 4


def test_a_worker_whose_announcement_ran_out_offers_no_slots(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    store.hset(keys.fleet(), "gone", json.dumps({"slots": 50, "expires": time.time() - 1}))
    notifier.notify_user(USER, user_body())

    scheduler(store, published).pump()

    assert published == []
    assert Fleet(store).slots() == {}


def test_a_worker_whose_clock_runs_behind_still_offers_its_slots(
    store: redis.Redis, notifier: Notifier, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda real=time.time: real() - 60)  # its host is a minute slow
    Fleet(store).announce("worker-b", 4)
    monkeypatch.undo()
    job_id = notifier.notify_user(USER, user_body())

    scheduler(store, published).pump()

    assert published == [(job_id, 0, lane_of(store, job_id))]


def test_a_held_lane_is_not_served_until_its_hold_ends(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    leader, lanes = scheduler(store, published), LaneStore(store)
    first = notifier.notify_user(USER, user_body())
    leader.step()
    lane, ref = lane_of(store, first), keys.request_ref(first, 0)
    lanes.claim(lane, first, 0, "worker")
    lanes.defer(lane, ref, "worker", 0.0, hold=0.3)  # a 429 with Retry-After: 0.3
    second = notifier.notify_user(OTHER_USER, user_body())

    leader.step()
    assert [job_id for job_id, _, _ in published] == [first]

    time.sleep(0.35)
    leader.step()
    assert sorted(job_id for job_id, _, _ in published[1:]) == sorted([first, second])


def test_a_delayed_request_is_not_handed_before_its_time_and_is_afterwards(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    leader, lanes = scheduler(store, published), LaneStore(store)
    delayed = notifier.notify_user(USER, user_body())
    lanes.delay(lane_of(store, delayed), keys.request_ref(delayed, 0), lanes.now() + 0.3)
    ready = notifier.notify_user(USER, user_body(), tenant_id=OTHER_TENANT)

    leader.step()
    assert [job_id for job_id, _, _ in published] == [ready]

    time.sleep(0.35)
    leader.step()
    assert [job_id for job_id, _, _ in published] == [ready, delayed]


def test_nothing_is_handed_out_while_paused_and_it_is_after_resume(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    leader = scheduler(store, published)
    job_id = notifier.notify_user(USER, user_body())
    store.set(keys.paused(), "1")

    leader.step()
    assert published == []

    store.delete(keys.paused())
    leader.step()
    assert published == [(job_id, 0, lane_of(store, job_id))]


def test_an_empty_lane_is_forgotten_and_a_busy_one_is_kept(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    leader, lanes = scheduler(store, published), LaneStore(store)
    job_id = notifier.notify_user(USER, user_body())
    leader.step()
    leader.step()
    assert lanes.lane_ids() == [lane_of(store, job_id)], "its request is handed out"

    finish(store, job_id)
    leader.step()

    assert lanes.lane_ids() == []


def test_a_request_whose_message_was_lost_or_never_published_is_handed_out_again(
    store: redis.Redis, notifier: Notifier, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_module, "HAND_TIMEOUT", 0.05)
    monkeypatch.setattr(scheduler_module, "REAP_EVERY", 0.0)
    calls: Published = []

    def publish(job_id: str, index: int, lane: str, at: float) -> None:
        calls.append((job_id, index, lane))
        if len(calls) == 1:
            raise ConnectionError("the broker is away")

    leader = scheduler(store, published, publish=publish)
    job_id = notifier.notify_user(USER, user_body())
    for _ in range(3):  # not published; published but lost; published again
        leader.step()
        time.sleep(0.1)

    assert calls == [(job_id, 0, lane_of(store, job_id))] * 3


def test_a_request_of_a_job_that_is_gone_is_dropped_from_its_lane(store: redis.Redis, published: Published) -> None:
    lane = keys.lane_id(None, bulk=False)
    store.zadd(keys.lane(lane), {keys.request_ref("no-such-job", 0): 0})
    store.sadd(keys.lanes(), lane)
    leader = scheduler(store, published)

    leader.step()
    leader.step()

    assert published == []
    assert store.exists(keys.lane(lane)) == 0
    assert LaneStore(store).lane_ids() == []


def test_retention_deletes_an_ended_job_with_its_idempotency_key_once_it_has_run_out(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    ended = notifier.notify_recipients(bulk_body(150), idempotency_key="approvals-2026-11-24")
    pending = notifier.notify_recipients(bulk_body(150), idempotency_key="approvals-2026-11-25")
    finish(store, ended, 0)
    assert finish(store, ended, 1) == 2
    finish(store, pending, 0)
    kept = {*keys.job_keys(ended), *keys.job_keys(pending)} & set(store.keys())

    scheduler(store, published, retention=3600).pump()
    assert kept <= set(store.keys())
    assert set(store.zrange(keys.jobs_index(), 0, -1)) == {ended, pending}

    scheduler(store, published, retention=0).pump()
    assert not set(keys.job_keys(ended)) & set(store.keys())
    assert store.get(keys.idempotency("approvals-2026-11-24")) is None
    assert store.zrange(keys.jobs_index(), 0, -1) == [pending]
    assert store.zcard(keys.jobs_ended()) == 0
    assert {key for key in kept if pending in key} <= set(store.keys())
    assert store.get(keys.idempotency("approvals-2026-11-25")) == pending


def test_a_jobs_callback_is_sent_once_with_its_status_when_it_ends(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    sent: list[tuple[str, str | None, dict[str, Any]]] = []
    leader = scheduler(store, published, call_back=lambda *call: sent.append(call))
    job_id = notifier.notify_user(USER, user_body(), callback="backend.tasks.notified", callback_queue="backend")
    quiet = notifier.notify_user(USER, user_body())
    leader.step()
    assert sent == []

    finish(store, job_id)
    finish(store, quiet)
    leader.step()
    leader.step()

    ((task, queue, status),) = sent
    assert (task, queue) == ("backend.tasks.notified", "backend")
    assert (status["job_id"], status["state"]) == (job_id, "completed")


def test_a_callback_the_broker_refused_is_sent_again(
    store: redis.Redis, notifier: Notifier, published: Published
) -> None:
    calls: list[str] = []

    def call_back(task: str, queue: str | None, status: dict[str, Any]) -> None:
        calls.append(status["job_id"])
        if len(calls) == 1:
            raise ConnectionError("the broker is away")

    leader = scheduler(store, published, call_back=call_back)
    job_id = notifier.notify_user(USER, user_body(), callback="backend.tasks.notified")
    finish(store, job_id)

    leader.step()
    leader.step()
    leader.step()

    assert calls == [job_id, job_id]


def test_slots_are_reserved_ahead_one_interval_apart_however_late_the_leader_steps(
    store: redis.Redis, notifier: Notifier
) -> None:
    slots: list[float] = []
    leader = scheduler(store, [], limiter(store, bulk_tenant=2), publish=lambda j, i, lane, at: slots.append(at))
    notifier.notify_recipients(bulk_body(500))
    interval = 0.5 * (1 + PACING_MARGIN)

    leader.step()
    assert len(slots) == 1, "the second slot is an interval away, beyond the lookahead"
    time.sleep(interval - LOOKAHEAD / 2)  # the next slot is now within the lookahead, not yet due
    leader.step()
    time.sleep(interval + 0.2)  # the leader steps late: the slot after is already past
    leader.step()

    assert len(slots) == 3
    assert slots[1] - slots[0] == pytest.approx(interval, abs=1e-5)  # reserved ahead, at its exact slot
    assert slots[2] - slots[1] >= interval  # never closer than an interval, even after a late step
