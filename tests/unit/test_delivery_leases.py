"""`Delivery` and the lanes' leases: racing copies, reaped requests, heartbeats, Redis going away, and send slots.

Real job records and lanes on a private Redis, Graph behind MockTransport; the world is in
`tests.unit.delivery_world`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from producers import keys
from tests.unit.delivery_world import JobsAway, LanesAway, World, as_pair, world_of
from tests.unit.notification_examples import TENANT, USER, user_body
from worker import delivery as delivery_module
from worker import lanes as lanes_module
from worker.auth import AccessToken
from worker.delivery import LATE_RETURNS, Delivery, Result, Sent, Skipped
from worker.heartbeat import Heartbeat
from worker.lanes import SEND_ALLOWANCE

__all__ = ["world_of"]  # the fixture, from the shared world of the delivery tests


def test_two_workers_racing_on_one_handed_request_send_it_once(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(204))
    job_ids = [world.notifier.notify_user(USER, user_body()) for _ in range(10)]
    workers, results = [world.new_delivery(), world.new_delivery()], list[Result]()

    def race(delivery: Delivery, job_id: str, lane: str, start: threading.Barrier) -> None:
        start.wait()
        results.append(delivery.deliver(job_id, 0, lane))

    for job_id in job_ids:
        racers = (world.hand(job_id), threading.Barrier(2))
        threads = [threading.Thread(target=race, args=(worker, job_id, *racers)) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(type(r).__name__ for r in results) == ["Sent"] * 10 + ["Skipped"] * 10
    assert {r for r in results if isinstance(r, Skipped)} == {Skipped("stale")}
    assert len(world.graph.requests) == 10
    assert all(world.notifier.status(job_id)["requests"]["sent"] == 1 for job_id in job_ids)


def test_a_copy_of_a_request_that_is_not_handed_now_sends_nothing(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())

    assert world.delivery.deliver(job_id, 0, world.lane_of(job_id)) == Skipped("stale")
    assert world.graph.requests == []
    assert world.where(job_id) == {"lane"}


def test_a_request_whose_worker_vanished_is_reaped_then_sent_exactly_once(
    world_of: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())
    lane, ref = world.hand(job_id), keys.request_ref(job_id, 0)
    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 0.05)
    assert as_pair(world.lanes.claim(lane, job_id, 0, "gone")) == ("claimed", 1)  # and its worker is killed
    time.sleep(0.1)

    assert world.lanes.reap(lane) == 1
    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 60.0)
    result = world.deliver(job_id)

    assert isinstance(result, Sent)
    assert len(world.graph.requests) == 1
    assert not world.lanes.renew(lane, ref, "gone")
    assert not world.lanes.defer(lane, ref, "gone", 0.0)
    assert world.where(job_id) == set()
    assert world.jobs.attempts(job_id, 0) == 2


def test_a_send_slower_than_its_lease_keeps_it_by_heartbeat_and_is_sent_once(
    world_of: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 0.3)
    seen: list[Any] = []

    def slow(request: httpx.Request) -> httpx.Response:
        for _ in range(4):  # 0.4 s in all, longer than the lease; the heartbeat renews it meanwhile
            time.sleep(0.1)
            heartbeat.beat()
        seen.append(world.lanes.reap(lane))  # the leader reaps meanwhile...
        seen.append(world.new_delivery().deliver(job_id, 0, lane))  # ...and a copy of the task runs
        return httpx.Response(204)

    world = world_of(slow)
    heartbeat = Heartbeat(world.lanes)
    job_id = world.notifier.notify_user(USER, user_body())
    lane = world.hand(job_id)

    result = world.new_delivery(heartbeat=heartbeat).deliver(job_id, 0, lane)

    assert isinstance(result, Sent)
    assert seen == [0, Skipped("stale")]
    assert len(world.graph.requests) == 1
    assert heartbeat.held() == []


def test_a_redis_error_after_the_claim_puts_the_request_back_and_it_is_later_sent_once(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())
    lane, before = world.hand(job_id), world.lanes.now()
    heartbeat = Heartbeat(world.lanes)

    with pytest.raises(redis.ConnectionError):
        world.new_delivery(jobs=JobsAway(world.store), heartbeat=heartbeat).deliver(job_id, 0, lane)

    assert world.where(job_id) == {"lane"}
    assert world.store.zscore(keys.lane(lane), keys.request_ref(job_id, 0)) > before, "after a backoff"
    assert heartbeat.held() == []
    assert world.graph.requests == []
    assert isinstance(world.deliver(job_id), Sent)
    assert len(world.graph.requests) == 1
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_request_whose_worker_lost_redis_comes_back_when_its_lease_runs_out_and_is_sent_once(
    world_of: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 0.1)
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())
    lane = world.hand(job_id)
    away = world.new_delivery(jobs=JobsAway(world.store), lanes=LanesAway(world.store))

    with pytest.raises(redis.ConnectionError):
        away.deliver(job_id, 0, lane)
    assert world.where(job_id) == {"in flight", "leased"}
    time.sleep(0.15)

    assert world.lanes.reap(lane) == 1
    assert isinstance(world.deliver(job_id), Sent)
    assert len(world.graph.requests) == 1


@pytest.mark.parametrize("reaped", [True, False])
def test_a_request_whose_lease_was_lost_while_it_waited_for_a_token_is_not_sent_by_this_copy(
    world_of: Callable[..., World], store: redis.Redis, monkeypatch: pytest.MonkeyPatch, reaped: bool
) -> None:
    monkeypatch.setattr(delivery_module, "RENEW_EVERY", 0.0)  # the token wait counts as long: fence every send
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())
    ref = keys.request_ref(job_id, 0)
    slow_token = world.tokens.token

    def token_after_the_lease_ran_out(tenant_id: str, *args: Any, **kwargs: Any) -> AccessToken:
        if reaped:  # meanwhile the reaper gave the request back to its lane, for another worker to send
            store.hdel(keys.leases(), ref)
        return slow_token(tenant_id, *args, **kwargs)

    world.tokens.token = token_after_the_lease_ran_out  # type: ignore[method-assign]
    world.hand(job_id)
    result = world.deliver(job_id)

    if reaped:
        assert result == Skipped("lease lost before sending")
        assert world.graph.requests == []
    else:
        assert isinstance(result, Sent)
        assert len(world.graph.requests) == 1


def paced(world_of: Callable[..., World]) -> tuple[World, Delivery, list[float]]:
    """A world whose Delivery records the waits for a slot instead of sleeping them."""
    slept: list[float] = []
    world = world_of(httpx.Response(204))
    tokens: Any = world.tokens
    return world, Delivery(world.jobs, world.lanes, tokens, world.client, TENANT, sleep=slept.append), slept


def test_a_send_goes_to_graph_at_its_reserved_slot_plus_the_allowance_not_before(
    world_of: Callable[..., World], store: redis.Redis
) -> None:
    world, delivery, slept = paced(world_of)
    job_id = world.notifier.notify_user(USER, user_body())
    lane = world.hand(job_id)
    seconds, micros = store.time()

    result = delivery.deliver(job_id, 0, lane, at=seconds + micros / 1e6 + 0.05)

    assert isinstance(result, Sent)
    [wait] = slept  # a slot 50 ms ahead: the send waits for it and the allowance, and no longer
    assert 0.05 < wait <= 0.05 + SEND_ALLOWANCE


def test_a_send_that_missed_its_slot_goes_back_for_another_a_few_times_then_goes_late(
    world_of: Callable[..., World], store: redis.Redis
) -> None:
    world, delivery, slept = paced(world_of)
    job_id = world.notifier.notify_user(USER, user_body())
    lane = world.lane_of(job_id)
    seconds, micros = store.time()
    long_ago = seconds + micros / 1e6 - 1.0  # the message took a second: sent now, it would crowd the next ones

    results = []
    for _ in range(LATE_RETURNS + 1):
        world.hand(job_id)
        results.append(delivery.deliver(job_id, 0, lane, at=long_ago))

    assert results[:-1] == [Skipped("late for its slot")] * LATE_RETURNS
    assert isinstance(results[-1], Sent)  # it does not go back for ever
    assert len(world.graph.requests) == 1
    assert slept == []
