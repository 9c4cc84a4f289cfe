"""Where every request waits, in Redis: lanes per tenant and class, handed, in flight, ended.

A request (a ref, `{job_id}:{index}`) is in exactly one place until it ends:

    lane (waiting: score <= now, or delayed: score > now)
      │  hand: the scheduler's leader took a rate-limit permit for it and published a Celery message
      ▼
    handed (score: when it goes back to its lane if no worker has taken it; a lost message costs seconds)
      │  claim: a worker's send task took it, with a lease (score: when the lease runs out)
      ▼
    in flight ──── defer (transient failure: back to the lane, delayed by backoff or Retry-After)
      │             reap (lease ran out: its worker died or lost Redis; back to the lane at once)
      ▼
    ended (jobs.JobStore.finish: sent or dead-lettered, exactly once)

Each move is one Lua script, so two copies of a task, a leader and a worker, or a worker and the reaper can
race on a request and only one of them wins. Scripts read the time from Redis (`TIME`), so the fleet's hosts
need not agree on the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis

from producers import keys
from worker import lanescripts
from worker.bundles import Bundles
from worker.ratelimit import Limit, Permit, intervals, permit

#: Seconds a worker's lease on a request lasts; its heartbeat renews it every `RENEW_EVERY` while it sends.
LEASE_SECONDS = 10.0
RENEW_EVERY = 3.0
#: Seconds a handed request waits for a worker to take it before it goes back to its lane.
HAND_TIMEOUT = 10.0
#: How far ahead the scheduler reserves a request's slot under Graph's limits, and the allowance after its
#: slot at which the worker sends it: the scheduler is never late for a slot, and the time from hand-out to
#: Graph is the same for every request (its jitter would otherwise bring paced requests closer together).
LOOKAHEAD = 0.1
SEND_ALLOWANCE = 0.08
#: After a 429, a lane's pace drops to this share of its limit (at least `PACE_FLOOR`), then climbs back
#: by `PACE_CLIMB` of the limit a second while Graph stops throttling.
PACE_CUT = 0.9
PACE_FLOOR = 0.5
PACE_CLIMB = 0.05
#: Seconds of hand-outs a lane's current rate is measured over.
RATE_WINDOW = 10.0
#: Most refs one reap moves back per lane and per set (the leader reaps often).
REAP_BATCH = 200


@dataclass(frozen=True)
class LaneState:
    """One lane as the scheduler and `teams-notify status` see it, read at Redis time `now`."""

    lane: str
    heads: list[tuple[str, float]]
    waiting: int
    delayed: int
    handed: int
    in_flight: int
    held_until: float
    pace: float
    recent: int
    now: float

    @property
    def head_at(self) -> float | None:
        """When the lane's first request may go (None: the lane is empty)."""
        return self.heads[0][1] if self.heads else None

    @property
    def tenant(self) -> str | None:
        """The lane's tenant (None: the fleet's default tenant)."""
        tenant = self.lane.rpartition(":")[0]
        return None if tenant == "-" else tenant

    @property
    def bulk(self) -> bool:
        """True for a lane of bulk sends."""
        return self.lane.endswith(":" + keys.BULK)

    @property
    def ready(self) -> bool:
        """True when its head may be handed out now (not delayed, not held)."""
        return bool(self.heads) and self.heads[0][1] <= self.now and self.held_until <= self.now

    @property
    def empty(self) -> bool:
        """Nothing waiting, delayed, handed or in flight."""
        return self.waiting + self.delayed + self.handed + self.in_flight == 0


@dataclass(frozen=True)
class Claim:
    """What a claim found: `status` (`claimed`, or why not), the attempts counted, and Redis' time then."""

    status: str
    attempts: int
    now: float


@dataclass(frozen=True)
class Snapshot:
    """What the scheduler reads at each step, in one round trip."""

    states: list[LaneState]
    paused: bool
    lanes: list[str]
    fleet: dict[str, str]
    callbacks: int
    now: float


def split_ref(ref: str) -> tuple[str, int]:
    """A ref's job id and request index."""
    job_id, _, index = ref.rpartition(":")
    return job_id, int(index)


def pace_of(fields: dict[str, str], now: float) -> float:
    """A lane's share of its limit now: cut after a 429, climbing back linearly since."""
    if not fields:
        return 1.0
    factor = float(fields.get("factor", 1.0)) + (now - float(fields.get("at", now))) * PACE_CLIMB
    return max(PACE_FLOOR, min(1.0, factor))


class LaneStore:
    """The scripts that move requests between lanes, handed and in flight."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self.bundles = Bundles(client)
        self._claim = client.register_script(lanescripts.CLAIM)
        self._renew = client.register_script(lanescripts.RENEW)
        self._defer = client.register_script(lanescripts.DEFER)
        self._reap = client.register_script(lanescripts.REAP)
        self._hand = client.register_script(lanescripts.HAND)
        self._hand_many = client.register_script(lanescripts.HAND_MANY)
        self._forget = client.register_script(lanescripts.FORGET)

    def claim(self, lane: str, job_id: str, index: int, token: str) -> Claim:
        """Takes a handed request with a lease: (`claimed`, attempts so far including this one), or why not
        (`stale`: not handed now, another copy took it or it went back; `ended`; `cancelled`: its job was
        cancelled, and so is it now; `paused`: back in its lane)."""
        return self.claim_many(lane, [(job_id, index)], token)[0]

    def claim_many(self, lane: str, requests: list[tuple[str, int]], token: str) -> list[Claim]:
        """Claims handed requests of one lane (job id, index) in one step, each as `claim` does, all with
        the same lease token."""
        lane_keys = [
            keys.lane_handed(lane),
            keys.lane_in_flight(lane),
            keys.leases(),
            keys.paused(),
            keys.lane(lane),
            keys.jobs_ended(),
            keys.callbacks(),
        ]
        job_keys: list[str] = []
        args: list[str | int | float] = [token, LEASE_SECONDS]
        for job_id, index in requests:
            job_keys += [keys.job_outcomes(job_id), keys.job_attempts(job_id), keys.job(job_id)]
            args += [keys.request_ref(job_id, index), index, job_id]
        now, *found = self._claim(keys=lane_keys + job_keys, args=args)
        at = float(now)
        return [Claim(str(found[2 * i]), int(found[2 * i + 1]), at) for i in range(len(requests))]

    def renew(self, lane: str, ref: str, token: str) -> bool:
        """Extends a lease this token holds; False when it was lost (reaped after running out)."""
        return bool(self._renew(keys=[keys.lane_in_flight(lane), keys.leases()], args=[ref, token, LEASE_SECONDS]))

    def renew_all(self, held: list[tuple[str, str, str]]) -> int:
        """Renews many leases (lane, ref, token) in one round trip; returns how many were still held."""
        pipe = self._redis.pipeline(transaction=False)
        for lane, ref, token in held:
            self._renew(keys=[keys.lane_in_flight(lane), keys.leases()], args=[ref, token, LEASE_SECONDS], client=pipe)
        return sum(int(found) for found in pipe.execute())

    def defer(self, lane: str, ref: str, token: str, delay: float, hold: float = 0.0) -> bool:
        """Puts a request back in its lane, not to be sent for `delay` s; `hold` keeps the whole lane waiting."""
        held = self._defer(
            keys=[keys.lane_in_flight(lane), keys.leases(), keys.lane(lane), keys.lane_hold(lane), keys.lanes()],
            args=[ref, token, max(delay, 0.0), max(hold, 0.0), lane],
        )
        return bool(held)

    def reap(self, lane: str) -> int:
        """Moves handed requests nobody took and in-flight ones whose lease ran out back to the lane."""
        return int(
            self._reap(
                keys=[keys.lane_handed(lane), keys.lane_in_flight(lane), keys.leases(), keys.lane(lane)],
                args=[REAP_BATCH],
            )
        )

    def hand(self, lane: str, ref: str, limits: list[Limit] | None = None) -> Permit | None:
        """Reserves a slot under every limit (at most `LOOKAHEAD` s ahead) and moves a ready request from its
        lane to handed, in one step.

        Returns a Permit (`wait == 0`: handed, to be sent at `at`; else how long until one, and which limit
        holds it back), or None if the request is not waiting in its lane (gone, delayed).
        """
        limits = limits or []
        wait, worst, slot = self._hand(
            keys=[keys.lane(lane), keys.lane_handed(lane), keys.lane_recent(lane), *(lim.key for lim in limits)],
            args=[ref, HAND_TIMEOUT, RATE_WINDOW, int(LOOKAHEAD * 1e6), *intervals(limits)],
        )
        return None if int(wait) < 0 else permit(limits, int(wait), int(worst), int(slot))

    def hand_many(self, lane: str, refs: list[str]) -> list[str]:
        """Moves ready requests from their lane to handed without taking permits (pacing is off); returns
        those handed (a ref delayed or gone meanwhile stays where it is)."""
        handed = self._hand_many(
            keys=[keys.lane(lane), keys.lane_handed(lane), keys.lane_recent(lane)],
            args=[HAND_TIMEOUT, RATE_WINDOW, *refs],
        )
        return [str(ref) for ref in handed]

    def delay(self, lane: str, ref: str, until: float) -> None:
        """Keeps a waiting request in its lane until `until` (epoch s), letting the next one go first."""
        self._redis.zadd(keys.lane(lane), {ref: until}, xx=True)

    def abandon(self, lane: str, ref: str) -> None:
        """Lets go of a request in flight whose job is gone (nothing left to send)."""
        pipe = self._redis.pipeline()
        pipe.zrem(keys.lane_in_flight(lane), ref)
        pipe.hdel(keys.leases(), ref)
        pipe.execute()

    def drop(self, lane: str, ref: str) -> None:
        """Removes a request whose job is gone from its lane."""
        self._redis.zrem(keys.lane(lane), ref)

    def forget_if_empty(self, lane: str) -> bool:
        """Drops an empty lane from the set of lanes (a producer adding to it meanwhile keeps it)."""
        return bool(
            self._forget(
                keys=[keys.lanes(), keys.lane(lane), keys.lane_handed(lane), keys.lane_in_flight(lane)], args=[lane]
            )
        )

    def slow_down(self, lane: str) -> float:
        """After a 429: the lane's pace drops (for the whole fleet) and climbs back while Graph lets it."""
        now = self.now()
        fields = cast(dict[str, str], self._redis.hgetall(keys.lane_pace(lane)))
        factor = max(PACE_FLOOR, pace_of(fields, now) * PACE_CUT)
        pipe = self._redis.pipeline()
        pipe.hset(keys.lane_pace(lane), mapping={"factor": str(factor), "at": str(now)})
        pipe.expire(keys.lane_pace(lane), int((1 - PACE_FLOOR) / PACE_CLIMB) + 60)
        pipe.execute()
        return factor

    def now(self) -> float:
        """Redis' time, the clock every score is measured against."""
        seconds, micros = self._redis.time()
        return seconds + micros / 1e6

    def lane_ids(self) -> list[str]:
        """Every lane that holds or may hold requests, sorted."""
        return sorted(cast(set[str], self._redis.smembers(keys.lanes())))

    def states(self, lanes: list[str], peek: int = 1) -> list[LaneState]:
        """Each lane's first `peek` requests, counts, hold, pace and recent rate."""
        return self.snapshot(lanes, peek).states

    def snapshot(self, lanes: list[str], peek: int = 1, now: float | None = None) -> Snapshot:
        """The lanes' states, whether the fleet is paused, the lanes there are now and the fleet's
        announcements, in one round trip.

        `now` is the caller's guess of Redis' time, used only to split waiting from delayed in the same round
        trip; without it, a second round trip counts them at Redis' own time.
        """
        pipe = self._redis.pipeline(transaction=False)
        pipe.time()
        pipe.exists(keys.paused())
        pipe.smembers(keys.lanes())
        pipe.hgetall(keys.fleet())
        pipe.zcard(keys.callbacks())
        for lane in lanes:
            pipe.zrange(keys.lane(lane), 0, peek - 1, withscores=True)
            pipe.zcard(keys.lane(lane))
            pipe.zcard(keys.lane_handed(lane))
            pipe.zcard(keys.lane_in_flight(lane))
            pipe.get(keys.lane_hold(lane))
            pipe.hgetall(keys.lane_pace(lane))
            pipe.zcard(keys.lane_recent(lane))
            if now is not None:
                pipe.zcount(keys.lane(lane), "-inf", now)
        replies: list[Any] = pipe.execute()
        seconds, micros = replies[0]
        server_now = seconds + micros / 1e6
        width = 7 if now is None else 8
        if now is None:
            pipe = self._redis.pipeline(transaction=False)
            for lane in lanes:
                pipe.zcount(keys.lane(lane), "-inf", server_now)
            waiting = [int(n) for n in pipe.execute()] if lanes else []
        else:
            waiting = [int(replies[5 + width * i + 7]) for i in range(len(lanes))]
        states = []
        for i, lane in enumerate(lanes):
            head, total, handed, in_flight, hold, pace, recent = replies[5 + width * i : 12 + width * i]
            states.append(
                LaneState(
                    lane=lane,
                    heads=[(str(ref), float(at)) for ref, at in head],
                    waiting=waiting[i],
                    delayed=int(total) - waiting[i],
                    handed=int(handed),
                    in_flight=int(in_flight),
                    held_until=float(hold or 0),
                    pace=pace_of(pace, server_now),
                    recent=int(recent),
                    now=server_now,
                )
            )
        return Snapshot(states, bool(replies[1]), sorted(replies[2]), dict(replies[3]), int(replies[4]), server_now)
