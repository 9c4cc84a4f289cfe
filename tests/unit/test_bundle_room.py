"""Room for single sends: with pacing off, bulk bundles hold the worker slots; a single send left waiting
makes as many bundles stop early as it needs slots, and is handed out before any bulk lane. Real lanes and
jobs on a private Redis; Graph behind MockTransport."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
import redis

from producers import Notifier, keys
from tests.unit.delivery_world import World
from tests.unit.notification_examples import bulk_body, user_body
from tests.unit.test_bundles import Bundles as Published
from tests.unit.test_bundles import hand_all, leader, world_of
from worker.bundles import MAKING_ROOM, Bundles
from worker.delivery import Result, Sent, Skipped
from worker.heartbeat import Heartbeat
from worker.jobs import JobStore
from worker.lanes import LaneStore
from worker.scheduler import BUNDLE_MAX

__all__ = ["world_of"]  # the fixture


def sent_users(world: World) -> list[str]:
    return [r["userId"] for body in world.graph.bodies() for r in body["recipients"]]


def test_a_bundle_asked_for_room_stops_after_its_current_send_and_only_as_many_bundles_stop_as_asked(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(800))
    lane, requests = hand_all(world, job_id, 8)
    world.lanes.bundles.make_room(1)

    first = world.delivery.deliver_many(lane, requests[:4])
    second = world.delivery.deliver_many(lane, requests[4:])

    assert isinstance(first[0], Sent)  # the send under way is never cut short
    assert first[1:] == [Skipped(MAKING_ROOM)] * 3  # ... then the slot is given up
    assert all(isinstance(result, Sent) for result in second)  # the room was taken: the next bundle goes on
    assert world.lanes.bundles.room_wanted() == 0
    assert all(world.where(job_id, index) == {"lane"} for index in (1, 2, 3))  # back, ready, none leased
    assert [world.jobs.attempts(job_id, index) for index in (1, 2, 3)] == [0, 0, 0]

    refs = [keys.request_ref(job_id, index) for index in (1, 2, 3)]
    assert world.lanes.hand_many(lane, refs) == refs  # handed out again later: each sent once
    assert all(isinstance(result, Sent) for result in world.delivery.deliver_many(lane, requests[1:4]))
    assert len(sent_users(world)) == len(set(sent_users(world))) == 800
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_bulk_bundle_that_starts_while_room_is_wanted_gives_its_slot_up_before_sending_and_a_single_keeps_its(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(202), httpx.Response(202), httpx.Response(204))
    bulk_id = world.notifier.notify_recipients(bulk_body(300))
    lane, requests = hand_all(world, bulk_id, 3)
    single_id = world.notifier.notify_user("single@contoso.com", user_body())
    single_lane = world.hand(single_id)
    world.lanes.bundles.make_room(1)

    single = world.delivery.deliver_many(single_lane, [(single_id, 0)], check_first=True)
    assert isinstance(single[0], Sent)  # a single send's bundle never gives its slot up ...
    assert world.lanes.bundles.room_wanted() == 1  # ... nor takes the room asked for

    queued = world.delivery.deliver_many(lane, requests, check_first=True)
    assert queued == [Skipped(MAKING_ROOM)] * 3  # a bulk bundle queued behind it frees its slot at once
    assert len(world.graph.requests) == 1  # nothing of it was sent: Graph saw the single send alone
    assert world.lanes.bundles.room_wanted() == 0
    assert all(world.where(bulk_id, index) == {"lane"} for index in range(3))

    assert world.lanes.hand_many(lane, [keys.request_ref(bulk_id, i) for i in range(3)])
    again = world.delivery.deliver_many(lane, requests, check_first=True)  # no room wanted: it all goes
    assert all(isinstance(result, Sent) for result in again)
    users = [r["userId"] for body in world.graph.bodies()[1:] for r in body["recipients"]]
    assert len(users) == len(set(users)) == 300


def test_two_bundles_racing_for_one_slot_of_room_stop_one_of_them(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(100 * 12))
    lane, requests = hand_all(world, job_id, 12)
    world.lanes.bundles.make_room(1)
    outcomes: list[list[Result]] = []
    start = threading.Barrier(2)

    def bundle(part: list[tuple[str, int]]) -> None:
        delivery = world.new_delivery(lanes=LaneStore(world.store))
        start.wait()
        outcomes.append(delivery.deliver_many(lane, part))

    threads = [threading.Thread(target=bundle, args=(part,)) for part in (requests[:6], requests[6:])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stopped = [results for results in outcomes if Skipped(MAKING_ROOM) in results]
    assert len(stopped) == 1  # one slot asked, one slot freed ...
    assert isinstance(stopped[0][0], Sent)
    assert stopped[0][1:] == [Skipped(MAKING_ROOM)] * 5  # ... after one send
    assert sum(isinstance(result, Sent) for results in outcomes for result in results) == 7  # the other: all 6
    assert len(sent_users(world)) == len(set(sent_users(world))) == 700  # nothing twice


def test_a_request_for_room_that_expires_as_a_bundle_takes_it_up_leaves_nothing_that_blocks_the_next(
    store: redis.Redis,
) -> None:
    bundles = LaneStore(store).bundles
    bundles.make_room(1)
    replies = [0, None, "1"]  # a bundle read "1 slot wanted" ...
    store.delete(keys.make_room())  # ... and the request expired before it took the slot up

    assert bundles.reason(replies) is None  # nothing to take up: the bundle goes on
    assert not store.exists(keys.make_room())  # and no key is left behind without an expiry ...
    bundles.make_room(2)
    assert bundles.room_wanted() == 2  # ... so the leader's next request stands at once
    assert 0 < store.pttl(keys.make_room()) <= 250
    assert bundles.reason(replies) == MAKING_ROOM  # and is taken up, one slot at a time, expiry kept
    assert bundles.room_wanted() == 1
    assert 0 < store.pttl(keys.make_room()) <= 250


def test_a_single_send_behind_busy_bundles_gets_room_and_is_handed_out_first(
    store: redis.Redis, notifier: Notifier
) -> None:
    bundles: Published = []
    lanes = LaneStore(store)
    scheduler = leader(store, bundles, [], slots=2)
    bulk_id = notifier.notify_recipients(bulk_body(100 * 40))
    scheduler.step()
    bulk_lane = bundles[0][0]
    token = "running"
    running = [(bulk_id, int(ref.rsplit(":", 1)[1])) for _, refs in bundles for ref in refs]
    lanes.claim_many(bulk_lane, running, token)  # both slots busy with a bundle each
    scheduler.step()
    assert lanes.bundles.room_wanted() == 0  # bulk work alone never asks for room

    single_id = notifier.notify_user("single@contoso.com", user_body())
    bundles.clear()
    scheduler.step()
    assert bundles == []  # no slot free: the single send waits in its lane ...
    assert lanes.bundles.room_wanted() == 1  # ... and asks one bundle to give its slot up

    pipe = store.pipeline()
    lanes.bundles.queue_check(pipe, bulk_id)
    assert lanes.bundles.reason(pipe.execute()) == MAKING_ROOM  # a bundle takes the request up ...
    for job, index in running[1:BUNDLE_MAX]:
        lanes.defer(bulk_lane, keys.request_ref(job, index), token, 0.0)  # ... and its untried requests go back
    scheduler.step()
    single_lane = JobStore(store).load(single_id).lane  # type: ignore[union-attr]
    assert bundles[0] == (single_lane, [keys.request_ref(single_id, 0)])  # the single send goes first
    assert [lane for lane, _ in bundles[1:]] == [bulk_lane]  # then the bulk lane fills the slot freed

    lanes.claim_many(single_lane, [(single_id, 0)], "single")  # a worker took it: nothing waits any more
    scheduler.step()
    assert not store.exists(keys.make_room())


class VanishingBundles(Bundles):
    """Redis goes away between a bundle's sends, just as it asks whether to go on."""

    def reason(self, replies: Sequence[Any], take_room: bool = True) -> str | None:
        raise redis.ConnectionError("Error 111 connecting to redis: Connection refused")


def test_redis_vanishing_between_a_bundles_sends_leaves_no_lease_held_and_loses_nothing(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(202))
    heartbeat = Heartbeat(world.lanes)
    lanes = LaneStore(world.store)
    lanes.bundles = VanishingBundles(world.store)
    job_id = world.notifier.notify_recipients(bulk_body(300))
    lane, requests = hand_all(world, job_id, 3)

    with pytest.raises(redis.ConnectionError):
        world.new_delivery(lanes=lanes, heartbeat=heartbeat).deliver_many(lane, requests)

    assert world.jobs.outcome(job_id, 0) == "sent"  # the first went out before Redis vanished
    assert heartbeat.held() == []  # no lease kept alive for requests nobody sends
    assert all(world.where(job_id, index) == {"lane"} for index in (1, 2))  # back (or their leases run out)
    refs = [keys.request_ref(job_id, index) for index in (1, 2)]
    assert world.lanes.hand_many(lane, refs) == refs
    assert all(isinstance(result, Sent) for result in world.delivery.deliver_many(lane, requests[1:]))
    assert len(sent_users(world)) == len(set(sent_users(world))) == 300


def test_a_bundles_later_requests_read_their_body_and_whether_to_stop_in_one_round_trip(
    world_of: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(400))
    lane, requests = hand_all(world, job_id, 4)
    trips: list[str] = []
    command, execute = redis.Redis.execute_command, redis.client.Pipeline.execute

    def counted_command(client: redis.Redis, *args: Any, **options: Any) -> Any:
        trips.append(str(args[0]))
        return command(client, *args, **options)

    def counted_execute(pipe: redis.client.Pipeline, raise_on_error: bool = True) -> list[Any]:
        trips.append("pipeline")
        return execute(pipe, raise_on_error)

    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_execute)
    results = world.delivery.deliver_many(lane, requests, check_first=True)  # as the bundle task calls it

    assert all(isinstance(result, Sent) for result in results)
    assert len(sent_users(world)) == len(set(sent_users(world))) == 400
    # the claim of all four, then each request: its reads (body, and whether to stop) in one pipeline,
    # and its end in one script
    assert trips == ["EVALSHA"] + ["pipeline", "EVALSHA"] * 4
