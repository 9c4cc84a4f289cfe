"""The lane scripts on a real Redis: each move between lane, handed, in flight and ended is atomic, one racer wins."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from producers import Notifier, keys
from tests.unit.notification_examples import USER, user_body
from worker import lanes as lanes_module
from worker.heartbeat import Heartbeat
from worker.jobs import JobStore
from worker.lanes import (
    LEASE_SECONDS,
    PACE_CLIMB,
    PACE_CUT,
    PACE_FLOOR,
    Claim,
    LaneState,
    LaneStore,
    pace_of,
    split_ref,
)
from worker.ratelimit import Permit

JOB = "4d1f3c0e-0000-4000-8000-000000000001"
LANE = "contoso.onmicrosoft.com:single"
#: What a test may need of a Redis-time window: commands of the same test run within it.
SLACK = 5.0


def as_pair(claim: Claim) -> tuple[str, int]:
    """A claim's status and attempts."""
    return claim.status, claim.attempts


def granted(permit: Permit | None) -> bool:
    """True when the hand-out went through (a permit for a slot)."""
    return permit is not None and permit.wait == 0


@pytest.fixture
def lanes(store: redis.Redis) -> LaneStore:
    return LaneStore(store)


def ref(index: int = 0) -> str:
    return keys.request_ref(JOB, index)


def waiting(store: redis.Redis, *refs: str, at: float = 0.0, lane: str = LANE) -> None:
    """Puts refs in the lane as the producer does, ready at `at` (epoch seconds)."""
    store.zadd(keys.lane(lane), dict.fromkeys(refs, at))
    store.sadd(keys.lanes(), lane)


def handed(store: redis.Redis, lanes: LaneStore, *refs: str) -> None:
    waiting(store, *refs)
    for one in refs:
        assert granted(lanes.hand(LANE, one))


def claimed(store: redis.Redis, lanes: LaneStore, index: int, token: str) -> None:
    handed(store, lanes, ref(index))
    assert as_pair(lanes.claim(LANE, JOB, index, token)) == ("claimed", 1)


def place(store: redis.Redis, one: str) -> set[str]:
    """Where a ref is: the lane, handed, in flight (and whether a lease names it)."""
    found = {
        name
        for name, key in (
            ("lane", keys.lane(LANE)),
            ("handed", keys.lane_handed(LANE)),
            ("in flight", keys.lane_in_flight(LANE)),
        )
        if store.zscore(key, one) is not None
    }
    return found | ({"leased"} if store.hexists(keys.leases(), one) else set())


def test_a_ref_splits_into_its_job_id_and_request_index() -> None:
    assert split_ref(keys.request_ref(JOB, 42)) == (JOB, 42)


def test_a_ready_request_is_handed_out_of_its_lane(store: redis.Redis, lanes: LaneStore) -> None:
    waiting(store, ref())

    assert granted(lanes.hand(LANE, ref()))

    assert place(store, ref()) == {"handed"}
    assert lanes.now() < store.zscore(keys.lane_handed(LANE), ref()) <= lanes.now() + lanes_module.HAND_TIMEOUT
    assert lanes.hand(LANE, ref()) is None, "a request is handed once"


def test_a_delayed_request_is_not_handed_before_its_time(store: redis.Redis, lanes: LaneStore) -> None:
    waiting(store, ref(), at=lanes.now() + 60)

    assert lanes.hand(LANE, ref()) is None
    assert place(store, ref()) == {"lane"}


def test_a_handed_request_is_claimed_with_a_lease_and_counts_an_attempt(
    store: redis.Redis, lanes: LaneStore, notifier: Notifier
) -> None:
    job_id = notifier.notify_user(USER, user_body())
    lane = JobStore(store).load(job_id).lane  # type: ignore[union-attr]
    one = keys.request_ref(job_id, 0)
    assert granted(lanes.hand(lane, one))

    assert as_pair(lanes.claim(lane, job_id, 0, "token-a")) == ("claimed", 1)

    assert store.zscore(keys.lane_in_flight(lane), one) <= lanes.now() + LEASE_SECONDS
    assert store.hget(keys.leases(), one) == "token-a"
    assert store.hget(keys.job_attempts(job_id), "0") == "1"
    assert notifier.status(job_id)["state"] == "sending"


def test_a_request_that_is_not_handed_now_is_stale_to_a_claim(store: redis.Redis, lanes: LaneStore) -> None:
    waiting(store, ref())

    assert as_pair(lanes.claim(LANE, JOB, 0, "token-a")) == ("stale", 0)
    assert place(store, ref()) == {"lane"}
    assert store.hget(keys.job_attempts(JOB), "0") is None


def test_only_one_of_many_racing_claims_takes_a_handed_request(store: redis.Redis, lanes: LaneStore) -> None:
    handed(store, lanes, ref())
    start = threading.Barrier(8)
    statuses: list[str] = []

    def claim(token: str) -> None:
        start.wait()
        statuses.append(lanes.claim(LANE, JOB, 0, token).status)

    threads = [threading.Thread(target=claim, args=(f"token-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == ["claimed"] + ["stale"] * 7
    assert store.hget(keys.job_attempts(JOB), "0") == "1"


def test_a_handed_request_that_already_ended_is_not_claimed(store: redis.Redis, lanes: LaneStore) -> None:
    handed(store, lanes, ref())
    store.hset(keys.job_outcomes(JOB), "0", "sent")

    assert as_pair(lanes.claim(LANE, JOB, 0, "token-a")) == ("ended", 0)
    assert place(store, ref()) == set()


def test_a_claim_while_paused_puts_the_request_back_in_its_lane(store: redis.Redis, lanes: LaneStore) -> None:
    handed(store, lanes, ref())
    store.set(keys.paused(), "1")

    assert as_pair(lanes.claim(LANE, JOB, 0, "token-a")) == ("paused", 0)
    assert place(store, ref()) == {"lane"}
    assert store.zscore(keys.lane(LANE), ref()) <= lanes.now()

    store.delete(keys.paused())
    assert granted(lanes.hand(LANE, ref()))
    assert as_pair(lanes.claim(LANE, JOB, 0, "token-a")) == ("claimed", 1)


def test_a_lease_is_renewed_by_its_holder_only(store: redis.Redis, lanes: LaneStore) -> None:
    claimed(store, lanes, 0, "token-a")

    assert lanes.renew(LANE, ref(), "token-a")
    assert not lanes.renew(LANE, ref(), "token-b")
    assert store.hget(keys.leases(), ref()) == "token-a"


def test_renewing_many_leases_counts_those_still_held(store: redis.Redis, lanes: LaneStore) -> None:
    claimed(store, lanes, 0, "token-a")
    claimed(store, lanes, 1, "token-b")

    held = [(LANE, ref(0), "token-a"), (LANE, ref(1), "token-b"), (LANE, ref(2), "token-c")]
    assert lanes.renew_all(held) == 2


def test_a_deferred_request_waits_in_its_lane_for_its_delay(store: redis.Redis, lanes: LaneStore) -> None:
    claimed(store, lanes, 0, "token-a")
    store.srem(keys.lanes(), LANE)  # forgotten meanwhile: a deferred request brings its lane back
    before = lanes.now()

    assert lanes.defer(LANE, ref(), "token-a", 30.0)

    assert place(store, ref()) == {"lane"}
    assert before + 30 <= store.zscore(keys.lane(LANE), ref()) <= before + 30 + SLACK
    assert store.sismember(keys.lanes(), LANE)
    assert lanes.hand(LANE, ref()) is None
    assert store.get(keys.lane_hold(LANE)) is None, "no hold unless asked"


def test_a_hold_keeps_the_whole_lane_and_a_shorter_one_never_shortens_it(store: redis.Redis, lanes: LaneStore) -> None:
    claimed(store, lanes, 0, "token-a")
    claimed(store, lanes, 1, "token-b")
    before = lanes.now()

    lanes.defer(LANE, ref(0), "token-a", 30.0, hold=30.0)
    lanes.defer(LANE, ref(1), "token-b", 5.0, hold=5.0)
    waiting(store, ref(2))

    (state,) = lanes.states([LANE])
    assert before + 30 <= state.held_until <= before + 30 + SLACK
    assert 0 < store.pttl(keys.lane_hold(LANE)) <= 30_000
    assert state.head_at is not None
    assert state.head_at <= state.now, "its first request is due..."
    assert not state.ready, "...but the lane is held"


def test_a_lease_that_ran_out_is_reaped_and_its_old_holder_can_neither_renew_nor_defer_it(
    store: redis.Redis, lanes: LaneStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 0.05)
    claimed(store, lanes, 0, "gone")
    time.sleep(0.1)

    assert lanes.reap(LANE) == 1
    assert place(store, ref()) == {"lane"}
    assert not lanes.renew(LANE, ref(), "gone")

    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 60.0)
    assert granted(lanes.hand(LANE, ref()))
    assert as_pair(lanes.claim(LANE, JOB, 0, "new")) == ("claimed", 2)
    assert not lanes.defer(LANE, ref(), "gone", 0.0)
    assert not lanes.renew(LANE, ref(), "gone")
    assert place(store, ref()) == {"in flight", "leased"}
    assert store.hget(keys.leases(), ref()) == "new"
    assert lanes.renew(LANE, ref(), "new")


def test_a_defer_from_a_lost_lease_only_ever_delays_the_request(
    store: redis.Redis, lanes: LaneStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 0.05)
    claimed(store, lanes, 0, "gone")
    time.sleep(0.1)
    lanes.reap(LANE)
    back_at = store.zscore(keys.lane(LANE), ref())

    assert not lanes.defer(LANE, ref(), "gone", 30.0)
    delayed = store.zscore(keys.lane(LANE), ref())
    assert not lanes.defer(LANE, ref(), "gone", 0.0)

    assert delayed >= back_at + 30
    assert store.zscore(keys.lane(LANE), ref()) == delayed


def test_live_leases_and_fresh_hand_outs_are_not_reaped(store: redis.Redis, lanes: LaneStore) -> None:
    claimed(store, lanes, 0, "token-a")
    handed(store, lanes, ref(1))

    assert lanes.reap(LANE) == 0
    assert place(store, ref(0)) == {"in flight", "leased"}
    assert place(store, ref(1)) == {"handed"}


def test_a_handed_request_no_worker_took_is_reaped_after_the_hand_timeout(
    store: redis.Redis, lanes: LaneStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_module, "HAND_TIMEOUT", 0.05)
    handed(store, lanes, ref())
    time.sleep(0.1)

    assert lanes.reap(LANE) == 1
    assert place(store, ref()) == {"lane"}
    assert as_pair(lanes.claim(LANE, JOB, 0, "late")) == ("stale", 0), "the lost message's late copy does nothing"


def test_ending_a_request_takes_it_out_of_every_set(store: redis.Redis, lanes: LaneStore, notifier: Notifier) -> None:
    jobs = JobStore(store)
    job_id = notifier.notify_user(USER, user_body())
    job = jobs.load(job_id)
    assert job is not None
    one = keys.request_ref(job_id, 0)
    assert granted(lanes.hand(job.lane, one))
    lanes.claim(job.lane, job_id, 0, "token-a")

    assert jobs.finish(jobs.request(job, 0), "sent") == 2  # type: ignore[arg-type]

    for key in (keys.lane(job.lane), keys.lane_handed(job.lane), keys.lane_in_flight(job.lane)):
        assert store.zscore(key, one) is None
    assert not store.hexists(keys.leases(), one)
    assert jobs.outcome(job_id, 0) == "sent"


def test_an_empty_lane_is_forgotten_and_a_busy_one_is_kept(store: redis.Redis, lanes: LaneStore) -> None:
    handed(store, lanes, ref())

    assert not lanes.forget_if_empty(LANE)
    assert lanes.lane_ids() == [LANE]

    store.delete(keys.lane_handed(LANE))
    assert lanes.forget_if_empty(LANE)
    assert lanes.lane_ids() == []


def test_a_429_cuts_the_lanes_pace_to_its_floor_at_most_and_it_climbs_back(lanes: LaneStore) -> None:
    assert lanes.slow_down(LANE) == pytest.approx(PACE_CUT)
    assert lanes.slow_down(LANE) == pytest.approx(PACE_CUT * PACE_CUT, abs=0.01)
    assert [lanes.slow_down(LANE) for _ in range(5)][-1] == PACE_FLOOR

    fields = {"factor": str(PACE_FLOOR), "at": "1000"}
    assert pace_of(fields, 1000) == PACE_FLOOR
    assert pace_of(fields, 1010) == pytest.approx(PACE_FLOOR + 10 * PACE_CLIMB)
    assert pace_of(fields, 1000 + 1 / PACE_CLIMB) == 1.0
    assert pace_of({}, 1000) == 1.0


def test_a_lanes_state_counts_what_waits_what_is_delayed_handed_and_in_flight(
    store: redis.Redis, lanes: LaneStore
) -> None:
    claimed(store, lanes, 0, "token-a")
    handed(store, lanes, ref(1))
    waiting(store, ref(2), ref(3))
    waiting(store, ref(4), at=lanes.now() + 60)
    lanes.slow_down(LANE)

    (state,) = lanes.states([LANE], peek=8)

    assert (state.waiting, state.delayed, state.handed, state.in_flight) == (2, 1, 1, 1)
    assert [one for one, _ in state.heads] == [ref(2), ref(3), ref(4)]
    assert state.pace < 1
    assert state.recent == 2
    assert state.ready
    assert not state.empty
    assert (state.tenant, state.bulk) == ("contoso.onmicrosoft.com", False)


def test_a_lane_of_the_default_tenant_has_no_tenant() -> None:
    state = LaneState("-:bulk", [], 0, 0, 0, 0, 0.0, 1.0, 0, 0.0)

    assert (state.tenant, state.bulk, state.empty, state.ready, state.head_at) == (None, True, True, False, None)


def test_a_heartbeat_keeps_a_lease_past_its_length(
    store: redis.Redis, lanes: LaneStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes_module, "LEASE_SECONDS", 0.2)
    claimed(store, lanes, 0, "token-a")
    heartbeat = Heartbeat(lanes, every=0.02)
    heartbeat.hold(LANE, ref(), "token-a")
    heartbeat.start()
    try:
        time.sleep(0.35)
        assert lanes.reap(LANE) == 0
    finally:
        heartbeat.stop()

    assert place(store, ref()) == {"in flight", "leased"}


def test_a_stopped_heartbeat_ends_its_thread(lanes: LaneStore) -> None:
    heartbeat = Heartbeat(lanes, every=0.01)
    heartbeat.start()

    heartbeat.stop()
    heartbeat.join(timeout=5)

    assert not heartbeat.is_alive()


def test_a_released_lease_is_no_longer_renewed(store: redis.Redis, lanes: LaneStore) -> None:
    claimed(store, lanes, 0, "token-a")
    heartbeat = Heartbeat(lanes)
    heartbeat.hold(LANE, ref(), "token-a")
    assert heartbeat.beat() == 1

    heartbeat.release(ref())

    assert heartbeat.held() == []
    assert heartbeat.beat() == 0
