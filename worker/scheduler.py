"""The delivery scheduler: one leader in the fleet hands ready requests to workers when Graph's limits allow.

Every worker runs this thread; the one holding the leader lock (a `redis.lock.Lock` with a short TTL,
renewed on every step) pumps, and any other takes over within `LEADER_TTL` seconds if it dies. A step:

1. reaps: requests handed but never taken, and leases that ran out, go back to their lanes;
2. reads every lane (head, counts, Retry-After hold, adaptive pace) in one round trip;
3. hands out requests round-robin across lanes, one per lane per turn, while the fleet has free slots:
   each takes a permit from every Graph limit it falls under (reserved now, so no worker waits for it)
   and is published to the Celery queue. A lane whose tenant or app limit is spent waits for its next
   permit; a request held back by its own user's or team's limit steps aside for the next in its lane.
   With pacing off there is no permit to take: a lane's ready requests go out in bundles (what is ready
   spread over the fleet's slots, at most `BUNDLE_MAX` a message), which one task sends one after another
   (a single send left waiting because bundles hold every slot makes one of them stop early: `worker.bundles`);
4. sleeps until the earliest permit, delayed request or hold comes due (at most `MAX_IDLE`).

Single sends have their own lanes and limits, so they never wait behind bulk work; tenants share the
app-wide limit because lanes take turns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis
from redis.exceptions import LockError

from producers import keys
from producers.status import JobStatus
from worker.fleet import Fleet
from worker.jobs import JobStore
from worker.lanes import LaneState, LaneStore, split_ref
from worker.ratelimit import Limit, RateLimiter

log = logging.getLogger(__name__)

#: Seconds the leader lock lasts unless renewed (every `LEADER_RENEW` s); a dead leader is replaced within
#: about this long plus `FOLLOWER_POLL`, how often a worker that is not the leader tries to become it.
LEADER_TTL = 3.0
LEADER_RENEW = 0.5
FOLLOWER_POLL = 0.5
#: Longest and shortest sleep between two steps of the leader.
MAX_IDLE = 0.05
MIN_IDLE = 0.002
#: How often the leader reaps, prunes ended jobs, and workers announce their slots (seconds).
REAP_EVERY = 1.0
PRUNE_EVERY = 60.0
ANNOUNCE_EVERY = 3.0
#: How often a leader with no lane known asks for them (seconds).
LANES_EVERY = 0.2
#: Ready requests read per lane and step.
PEEK = 32
#: How soon the leader looks again when ready requests wait for a free slot.
SLOT_POLL = 0.01

#: With pacing off, the leader hands a lane's ready requests out in bundles of up to this many (one Celery
#: message, sent one after another by one task): fewer messages and task events per Graph request.
BUNDLE_MAX = 8

Publish = Callable[[str, int, str, float], None]
PublishMany = Callable[[str, list[str]], None]
CallBack = Callable[[str, str | None, dict[str, Any]], None]


class Scheduler(threading.Thread):
    """Runs in every worker; pumps while it holds the leader lock."""

    def __init__(
        self,
        client: redis.Redis,
        jobs: JobStore,
        limiter: RateLimiter | None,
        publish: Publish,
        call_back: CallBack,
        *,
        node: str,
        slots: int,
        default_tenant: str | None,
        retention: float,
        publish_many: PublishMany | None = None,
    ) -> None:
        super().__init__(name="teams-notify-scheduler", daemon=True)
        self._redis = client
        self._lanes = LaneStore(client)
        self._jobs = jobs
        self._limiter = limiter
        self._publish = publish
        self._publish_many = publish_many if limiter is None else None
        self._bundle = 1
        self._room_asked = False
        self._call_back = call_back
        self._fleet = Fleet(client)
        self._node = node
        self._slots = slots
        self._default_tenant = default_tenant
        self._retention = retention
        self._lock = client.lock(keys.scheduler_lock(), timeout=LEADER_TTL, thread_local=False)
        self._leading = False
        self._turn = 0
        self._due = dict.fromkeys(("announce", "reap", "prune", "renew", "lanes"), 0.0)
        self._lane_cache: list[str] = []
        self._offset = 0.0
        self._blocked: dict[str, float] = {}
        self._stopping = threading.Event()
        self._warned = 0.0

    @property
    def leading(self) -> bool:
        """True while this worker is the leader."""
        return self._leading

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self.step()
            except (redis.RedisError, LockError) as exc:
                self._leading = False
                if time.monotonic() - self._warned > 10:
                    self._warned = time.monotonic()
                    log.warning("scheduler: Redis unreachable (%s); trying again", exc)
                wait = FOLLOWER_POLL
            except Exception:  # a bug must not end the thread: the fleet would stop handing requests out
                log.exception("scheduler step failed; trying again")
                wait = FOLLOWER_POLL
            self._stopping.wait(wait)
        self._step_down()

    def stop(self) -> None:
        """Ends the loop; the lock is released so another worker leads at once."""
        self._stopping.set()

    def step(self) -> float:
        """One step: announce, lead if possible, pump if leading; returns seconds to sleep."""
        if self._due_now("announce", ANNOUNCE_EVERY):
            self._fleet.announce(self._node, self._slots)
        if not self._lead():
            return FOLLOWER_POLL
        return self.pump()

    def pump(self) -> float:
        """Reaps, then hands out what Graph's limits and the fleet's free slots allow; returns the sleep.

        A step costs one round trip to read every lane and one per request handed out: lanes and slots are
        re-read a few times a second, and a limit known to be spent is not asked again before its time.
        """
        lanes = self._lane_ids()
        if self._due_now("reap", REAP_EVERY):
            for lane in lanes:
                if back := self._lanes.reap(lane):
                    log.warning("lane %s: %d request(s) back from a lost message or an expired lease", lane, back)
        if self._due_now("prune", PRUNE_EVERY):
            self._prune()
        asked = time.time()
        snap = self._lanes.snapshot(lanes, PEEK, asked + self._offset)
        if set(snap.lanes) - set(lanes):  # a new lane (a tenant's first job, say): read it now
            snap = self._lanes.snapshot(snap.lanes, PEEK, asked + self._offset)
        self._lane_cache, self._offset, states = snap.lanes, snap.now - asked, snap.states
        if snap.callbacks:
            self._send_callbacks()
        if snap.paused:
            return MAX_IDLE * 5
        slots = sum(self._fleet.alive(snap.fleet, snap.now).values())
        self._bundle = self._bundle_size(states, slots)
        free = slots * self._bundle - sum(s.handed + s.in_flight for s in states)
        waits = [MAX_IDLE]
        for state in states:
            if state.empty:
                self._lanes.forget_if_empty(state.lane)
                self._due["lanes"] = 0.0
            elif state.head_at is not None and not state.ready:
                waits.append(max(state.head_at, state.held_until) - state.now)
        waits.append(self._hand_out(states, free))
        return max(MIN_IDLE, min(waits))

    def _hand_out(self, states: list[LaneState], free: int) -> float:
        """Round-robin over the ready lanes, one request per lane per turn, single sends' lanes first in each
        turn; returns the next permit's wait."""
        queues = {s.lane: [ref for ref, at in s.heads if at <= s.now] for s in states if s.ready}
        by_lane = {s.lane: s for s in states}
        order = sorted(queues)
        if order:
            self._turn = (self._turn + 1) % len(order)
            order = order[self._turn :] + order[: self._turn]
            order.sort(key=lambda lane: by_lane[lane].bulk)  # stable: the rotation stays within each class
        next_wait = MAX_IDLE
        while free > 0 and order:
            for lane in list(order):
                if free <= 0:
                    break
                handed, wait = self._hand_one(by_lane[lane], queues[lane])
                free -= handed
                if wait is not None:
                    next_wait = min(next_wait, wait)
                if not handed:
                    order.remove(lane)
                elif not queues[lane] and by_lane[lane].waiting > PEEK:
                    next_wait = MIN_IDLE  # more are ready than were read: step again at once
        if free <= 0 and any(queues.values()):
            next_wait = min(next_wait, SLOT_POLL)  # every slot is busy: look again as soon as one may be free
        self._make_room(states, sum(len(refs) for lane, refs in queues.items() if not by_lane[lane].bulk))
        return next_wait

    def _make_room(self, states: list[LaneState], unhanded: int) -> None:
        """Pacing off: while single sends wait (left in their lane as every slot was busy, or handed out
        but not yet taken by a worker), asks running bulk bundles to stop early and free a slot for each,
        and for each bulk bundle queued ahead of them; withdraws the request once none waits."""
        if self._publish_many is None:
            return
        waiting = unhanded + sum(s.handed for s in states if not s.bulk)
        if not waiting and not self._room_asked:
            return
        queued_bulk = sum(s.handed for s in states if s.bulk)
        self._lanes.bundles.make_room(waiting + -(-queued_bulk // self._bundle) if waiting else 0)
        self._room_asked = waiting > 0

    def _bundle_size(self, states: list[LaneState], slots: int) -> int:
        """Requests a message carries: 1 when paced; else enough to spread what is ready over every slot,
        at most `BUNDLE_MAX`."""
        if self._publish_many is None or slots <= 0:
            return 1
        ready = sum(s.waiting for s in states if s.ready)
        return max(1, min(BUNDLE_MAX, -(-ready // slots)))

    def _hand_one(self, state: LaneState, refs: list[str]) -> tuple[int, float | None]:
        """Hands out the first request of the lane a permit allows (or, pacing off, a bundle of its first
        ones): (requests handed, None), or (0, wait for a permit)."""
        if self._publish_many is not None:
            return self._hand_bundle(state, refs, self._publish_many)
        while refs:
            ref = refs.pop(0)
            job_id, index = split_ref(ref)
            job = self._jobs.load(job_id)
            if job is None:
                self._lanes.drop(state.lane, ref)
                continue
            limits: list[Limit] = []
            if self._limiter is not None:
                tenant = state.tenant or self._default_tenant or "-"
                limits = self._limiter.limits_for(job, tenant, job.single_user, state.pace)
                spent = self._spent(limits)
                if spent is not None:
                    return 0, spent
            permit = self._lanes.hand(state.lane, ref, limits)
            if permit is None:
                continue  # cancelled or delayed meanwhile
            if permit.wait > 0:
                if permit.blocked_by is not None and permit.blocked_by.target:
                    self._lanes.delay(state.lane, ref, state.now + permit.wait)  # step aside
                    continue
                if permit.blocked_by is not None:
                    self._blocked[permit.blocked_by.key] = time.monotonic() + permit.wait
                return 0, permit.wait
            try:
                self._publish(job_id, index, state.lane, permit.at if self._limiter is not None else 0.0)
            except Exception as exc:  # the broker is away: the request goes back after the hand timeout
                log.warning("lane %s: request %s not published (%s); it comes back", state.lane, ref, exc)
                return 0, FOLLOWER_POLL
            return 1, None
        return 0, None

    def _hand_bundle(self, state: LaneState, refs: list[str], publish: PublishMany) -> tuple[int, float | None]:
        """Pacing off: hands the lane's next ready requests out as one message; (requests handed, None)."""
        while refs:
            take, refs[:] = refs[: self._bundle], refs[self._bundle :]
            handed = self._lanes.hand_many(state.lane, take)
            if not handed:
                continue  # cancelled or delayed meanwhile
            try:
                publish(state.lane, handed)
            except Exception as exc:  # the broker is away: the requests go back after the hand timeout
                log.warning("lane %s: %d request(s) not published (%s); they come back", state.lane, len(handed), exc)
                return 0, FOLLOWER_POLL
            return len(handed), None
        return 0, None

    def _spent(self, limits: list[Limit]) -> float | None:
        """Seconds until the lane's limits (a tenant's, the app's) may have a permit, if known to be spent."""
        now = time.monotonic()
        waits = [self._blocked.get(lim.key, 0.0) - now for lim in limits if not lim.target]
        longest = max(waits, default=0.0)
        return longest if longest > 0 else None

    def _lane_ids(self) -> list[str]:
        """The lanes as the last step saw them (each step reads them anew for the next)."""
        if not self._lane_cache and self._due_now("lanes", LANES_EVERY):
            self._lane_cache = self._lanes.lane_ids()
        return self._lane_cache

    def _prune(self) -> None:
        """Deletes the jobs that ended longer than the retention ago: records, recipients, idempotency keys."""
        cutoff = time.time() - self._retention
        expired = cast(
            list[str], self._redis.zrange(keys.jobs_ended(), "-inf", cutoff, byscore=True, offset=0, num=500)
        )
        for job_id in expired:
            idempotency = cast(str | None, self._redis.hget(keys.job(job_id), "idempotency_key"))
            pipe = self._redis.pipeline()
            pipe.delete(*keys.job_keys(job_id), *([keys.idempotency(idempotency)] if idempotency else []))
            pipe.zrem(keys.jobs_index(), job_id)
            pipe.zrem(keys.jobs_ended(), job_id)
            pipe.execute()
        if expired:
            log.info("retention: deleted %d job(s) that ended over %.0fs ago", len(expired), self._retention)

    def _send_callbacks(self) -> None:
        """Sends the callback task of each job that ended (at least once: removed only once published)."""
        for job_id in cast(list[str], self._redis.zrange(keys.callbacks(), 0, 19)):
            record = cast(dict[str, str], self._redis.hgetall(keys.job(job_id)))
            if record.get("callback"):
                status = JobStatus.from_record(job_id, record).document()
                try:
                    self._call_back(record["callback"], record.get("callback_queue") or None, status)
                except Exception as exc:  # the broker is away: the callback stays queued
                    log.warning("job %s: callback %s not sent (%s); trying again", job_id, record["callback"], exc)
                    return
                log.info("job %s ended %s: callback %s sent", job_id, status["state"], record["callback"])
            self._redis.zrem(keys.callbacks(), job_id)

    def _lead(self) -> bool:
        """Holds or takes the leader lock; True while this worker leads."""
        if self._leading:
            if not self._due_now("renew", LEADER_RENEW):
                return True
            try:
                self._lock.reacquire()
            except LockError:
                self._leading = False
                log.warning("%s is no longer the scheduler's leader", self._node)
        elif self._lock.acquire(blocking=False):
            self._leading = True
            self._due["reap"] = 0.0
            log.info("%s leads the scheduler", self._node)
        return self._leading

    def _step_down(self) -> None:
        try:
            if self._leading:
                self._lock.release()
            self._fleet.leave(self._node)
        except (redis.RedisError, LockError):
            pass
        self._leading = False

    def _due_now(self, what: str, every: float) -> bool:
        now = time.monotonic()
        if now < self._due[what]:
            return False
        self._due[what] = now + every
        return True
