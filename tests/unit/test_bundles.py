"""Bundles: with pacing off, the leader hands a lane's ready requests out several to a message, and one task
sends them one after another. Real lanes and jobs on a private Redis; Graph behind MockTransport."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from producers import Notifier, keys
from tests.unit.delivery_world import World, world_of
from tests.unit.notification_examples import TENANT, bulk_body
from tests.unit.test_scheduler import limiter
from worker.delivery import Sent, Skipped
from worker.fleet import Fleet
from worker.heartbeat import Heartbeat
from worker.jobs import JobStore
from worker.lanes import LaneStore
from worker.scheduler import BUNDLE_MAX, Scheduler

__all__ = ["world_of"]  # the fixture, shared with the delivery tests

Bundles = list[tuple[str, list[str]]]


def leader(store: redis.Redis, bundles: Bundles, singles: list[str], *, slots: int, paced: bool = False) -> Scheduler:
    """A scheduler whose published messages are recorded: bundles (lane, refs), and single refs."""
    return Scheduler(
        store,
        JobStore(store),
        limiter(store) if paced else None,
        lambda job_id, index, lane, at: singles.append(keys.request_ref(job_id, index)),
        lambda task, queue, status: None,
        node="worker-a",
        slots=slots,
        default_tenant=TENANT,
        retention=3600.0,
        publish_many=lambda lane, refs: bundles.append((lane, refs)),
    )


def hand_all(world: World, job_id: str, total: int) -> tuple[str, list[tuple[str, int]]]:
    """The leader's part for a whole job: every request made ready and handed out in one bundle."""
    lane = world.lane_of(job_id)
    refs = [keys.request_ref(job_id, index) for index in range(total)]
    world.store.zadd(keys.lane(lane), dict.fromkeys(refs, 0))
    assert world.lanes.hand_many(lane, refs) == refs
    return lane, [(job_id, index) for index in range(total)]


def test_a_bundle_spreads_what_is_ready_over_the_slots_and_carries_every_request_once(
    store: redis.Redis, notifier: Notifier
) -> None:
    bundles: Bundles = []
    singles: list[str] = []
    job_id = notifier.notify_recipients(bulk_body(100 * 40))  # 40 requests over 2 slots
    scheduler = leader(store, bundles, singles, slots=2)

    scheduler.step()

    assert singles == []
    assert [len(refs) for _, refs in bundles] == [BUNDLE_MAX, BUNDLE_MAX]  # 2 slots, a bundle each, full
    handed = [ref for _, refs in bundles for ref in refs]
    assert len(set(handed)) == len(handed) == 2 * BUNDLE_MAX
    assert set(handed) <= {keys.request_ref(job_id, index) for index in range(40)}
    assert set(handed) == set(store.zrange(keys.lane_handed(bundles[0][0]), 0, -1))

    few = notifier.notify_recipients(bulk_body(300), tenant_id="fabrikam.onmicrosoft.com")  # 3 requests
    store.delete(keys.lane(bundles[0][0]), keys.lane_handed(bundles[0][0]))
    bundles.clear()
    scheduler.step()
    assert [len(refs) for _, refs in bundles] == [2, 1]  # 3 ready over 2 slots: bundles of 2
    assert sorted(ref for _, refs in bundles for ref in refs) == [keys.request_ref(few, i) for i in range(3)]


def test_paced_lanes_are_handed_one_request_a_message(store: redis.Redis, notifier: Notifier) -> None:
    bundles: Bundles = []
    singles: list[str] = []
    job_id = notifier.notify_recipients(bulk_body(100 * 40))
    leader(store, bundles, singles, slots=2, paced=True).step()

    assert bundles == []
    assert singles[:1] == [keys.request_ref(job_id, 0)]


def test_hand_many_hands_only_what_waits_now(store: redis.Redis, notifier: Notifier) -> None:
    lanes = LaneStore(store)
    job_id = notifier.notify_recipients(bulk_body(300))
    lane = JobStore(store).load(job_id).lane  # type: ignore[union-attr]
    first, second, third = (keys.request_ref(job_id, index) for index in range(3))
    store.zadd(keys.lane(lane), {first: 0, second: lanes.now() + 60})  # the second is delayed
    store.zrem(keys.lane(lane), third)  # the third is gone (handed elsewhere)

    assert lanes.hand_many(lane, [first, second, third]) == [first]
    assert store.zscore(keys.lane(lane), second) is not None
    assert store.zscore(keys.lane_handed(lane), third) is None


def test_a_bundle_is_sent_in_order_each_request_once(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(450))
    lane, requests = hand_all(world, job_id, 5)

    results = world.delivery.deliver_many(lane, requests)

    assert all(isinstance(result, Sent) for result in results)
    assert [len(body["recipients"]) for body in world.graph.bodies()] == [100, 100, 100, 100, 50]
    assert world.notifier.status(job_id)["state"] == "completed"
    assert all(world.where(job_id, index) == set() for index in range(5))


def test_two_copies_of_a_bundle_racing_send_each_request_exactly_once(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(100 * 12))
    lane, requests = hand_all(world, job_id, 12)
    results: list[Any] = []
    start = threading.Barrier(2)

    def copy() -> None:
        delivery = world.new_delivery()
        start.wait()
        results.extend(delivery.deliver_many(lane, requests))

    threads = [threading.Thread(target=copy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sent_users = [r["userId"] for body in world.graph.bodies() for r in body["recipients"]]
    assert len(sent_users) == len(set(sent_users)) == 1200  # every recipient once: none lost, none twice
    assert sum(isinstance(result, Sent) for result in results) == 12
    assert sum(isinstance(result, Skipped) for result in results) == 12
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_send_that_raises_gives_back_its_request_and_those_after_it_ready_at_once(
    world_of: Callable[..., World],
) -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug in the second send")
        return httpx.Response(202)

    world = world_of(answer)
    heartbeat = Heartbeat(world.lanes)
    delivery = world.new_delivery(heartbeat=heartbeat)
    job_id = world.notifier.notify_recipients(bulk_body(400))
    lane, requests = hand_all(world, job_id, 4)

    with pytest.raises(RuntimeError, match="second send"):
        delivery.deliver_many(lane, requests)

    assert world.jobs.outcome(job_id, 0) == "sent"  # the one before went out
    assert all(world.where(job_id, index) == {"lane"} for index in (1, 2, 3))  # the rest are back, none leased
    assert heartbeat.held() == []
    assert [world.jobs.attempts(job_id, index) for index in (2, 3)] == [0, 0]  # never tried: no attempt spent
    assert world.store.zscore(keys.lane(lane), keys.request_ref(job_id, 2)) <= world.lanes.now()  # ready now

    # the fault was one-off: the requests handed out again go through
    world.store.zrem(keys.lane(lane), *[keys.request_ref(job_id, index) for index in (1, 2, 3)])
    world.store.zadd(keys.lane_handed(lane), {keys.request_ref(job_id, index): 1e12 for index in (1, 2, 3)})
    results = delivery.deliver_many(lane, requests[1:])
    assert all(isinstance(result, Sent) for result in results)
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_bundle_claimed_while_paused_goes_back_whole_and_is_sent_after_resume(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(300))
    lane, requests = hand_all(world, job_id, 3)
    world.store.set(keys.paused(), "1")

    results = world.delivery.deliver_many(lane, requests)

    assert [result for result in results] == [Skipped("paused")] * 3
    assert world.graph.requests == []
    world.store.delete(keys.paused())
    refs = [keys.request_ref(job_id, index) for index in range(3)]
    assert world.lanes.hand_many(lane, refs) == refs
    assert all(isinstance(result, Sent) for result in world.delivery.deliver_many(lane, requests))
    assert len(world.graph.requests) == 3


def test_the_fleets_slots_bound_how_many_requests_are_out_at_once(store: redis.Redis, notifier: Notifier) -> None:
    bundles: Bundles = []
    notifier.notify_recipients(bulk_body(100 * 100))
    scheduler = leader(store, bundles, [], slots=2)
    scheduler.step()
    scheduler.step()
    assert sum(len(refs) for _, refs in bundles) == 2 * BUNDLE_MAX  # nothing more until a slot frees

    Fleet(store).announce("worker-b", 1)
    scheduler.step()
    assert sum(len(refs) for _, refs in bundles) == 3 * BUNDLE_MAX


def test_a_pause_during_a_bundle_sends_the_rest_back_unsent_and_resume_sends_them(
    world_of: Callable[..., World],
) -> None:
    world: World

    def answer(request: httpx.Request) -> httpx.Response:
        world.store.set(keys.paused(), "1")  # an operator pauses while the first request is at Graph
        return httpx.Response(202)

    world = world_of(answer)
    job_id = world.notifier.notify_recipients(bulk_body(400))
    lane, requests = hand_all(world, job_id, 4)

    results = world.delivery.deliver_many(lane, requests)

    assert isinstance(results[0], Sent)
    assert results[1:] == [Skipped("paused or cancelled")] * 3
    assert len(world.graph.requests) == 1  # nothing more reached Graph once paused
    assert all(world.where(job_id, index) == {"lane"} for index in (1, 2, 3))
    assert [world.jobs.attempts(job_id, index) for index in (1, 2, 3)] == [0, 0, 0]

    world.store.delete(keys.paused())
    world.graph.answers = [httpx.Response(202)]
    refs = [keys.request_ref(job_id, index) for index in (1, 2, 3)]
    assert world.lanes.hand_many(lane, refs) == refs
    assert all(isinstance(result, Sent) for result in world.delivery.deliver_many(lane, requests[1:]))
    assert len(world.graph.requests) == 4
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_cancel_during_a_bundle_stops_the_rest_from_reaching_graph(world_of: Callable[..., World]) -> None:
    world: World
    job_ids: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        world.notifier.cancel(job_ids[0])  # cancelled while its first request is at Graph
        return httpx.Response(202)

    world = world_of(answer)
    job_ids.append(world.notifier.notify_recipients(bulk_body(400)))
    lane, requests = hand_all(world, job_ids[0], 4)

    results = world.delivery.deliver_many(lane, requests)

    assert isinstance(results[0], Sent)  # it was at Graph already
    assert results[1:] == [Skipped("paused or cancelled")] * 3
    assert len(world.graph.requests) == 1
    refs = [keys.request_ref(job_ids[0], index) for index in (1, 2, 3)]
    assert world.lanes.hand_many(lane, refs) == refs  # the scheduler hands them out again ...
    assert world.delivery.deliver_many(lane, requests[1:]) == [Skipped("cancelled")] * 3  # ... and claims cancel them
    status = world.notifier.status(job_ids[0])
    assert status["state"] == "cancelled"
    assert (status["requests"]["sent"], status["requests"]["cancelled"]) == (1, 3)
    assert len(world.graph.requests) == 1
