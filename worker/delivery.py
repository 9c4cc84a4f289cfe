"""One Graph request's life in a worker: claim, token, send once, classify, record.

`Delivery.deliver` is what the send task runs, for a request the scheduler handed out with a permit already
reserved under Graph's limits. It claims the request with a lease (which the process's heartbeat renews),
sends it once, and then ends it (sent, or dead-lettered for a person) or puts it back in its lane, delayed
by backoff and Retry-After. Nothing here waits: every wait is a score in Redis. Whatever happens to the
task (an exception, Redis vanishing, the process killed), the request is recoverable: it is in its lane,
handed, or in flight under a lease that runs out.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import redis

from producers import keys
from worker import deadletters, observe
from worker.auth import TokenProvider
from worker.bundles import CHECKS
from worker.errors import AuthError, GraphError, Throttled, TokenTooShortLived, TransientGraphError, Unauthorized
from worker.graph import GraphClient, GraphResult
from worker.heartbeat import Heartbeat
from worker.jobs import JOB_ENDED, Job, JobStore, Request
from worker.lanes import LOOKAHEAD, RENEW_EVERY, SEND_ALLOWANCE, LaneStore, split_ref
from worker.results import DeadLettered, Deferred, Result, Sent, Skipped, log_call, retry_cause
from worker.retrying import MAX_ATTEMPTS, backoff, persistently, retry_after_of

__all__ = ["DeadLettered", "Deferred", "Delivery", "Lease", "Result", "Sent", "Skipped", "retry_cause"]

log = logging.getLogger(__name__)

#: Graph refuses a bulk send whose token has less than 45 minutes left (412): a cached token with less
#: than this is replaced by a fresh one, which must have at least BULK_TOKEN_REQUIRED left.
BULK_TOKEN_MIN_LIFETIME = 45 * 60 + 120
BULK_TOKEN_REQUIRED = 45 * 60 + 10
#: The longest a send waits for its slot: the scheduler reserves slots at most `LOOKAHEAD` ahead.
MAX_ALIGN = LOOKAHEAD + SEND_ALLOWANCE
#: A paced send later than this after its slot and allowance goes back for a new slot (at most
#: `LATE_RETURNS` times, then it goes late): the pacing margin (3% of a 1 s window) tolerates 30 ms.
LATE_TOLERANCE = 0.025
LATE_RETURNS = 2


@dataclass(frozen=True)
class Lease:
    """A request this task holds: its lane, its ref and the lease's token."""

    lane: str
    ref: str
    token: str
    claimed_at: float = field(default_factory=time.monotonic)
    send_after: float = 0.0


def _count_job_end(job: Job, ended: int) -> None:
    """`finish` answered 2: this request was its job's last."""
    if ended == JOB_ENDED:
        observe.job_ended(job.endpoint, job.created_at)


class Delivery:
    """Sends the requests of jobs, with the process's pooled Graph client and token provider."""

    def __init__(
        self,
        jobs: JobStore,
        lanes: LaneStore,
        tokens: TokenProvider,
        graph: GraphClient,
        default_tenant: str | None,
        heartbeat: Heartbeat | None = None,
        rand: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sleep = sleep
        self._jobs = jobs
        self._lanes = lanes
        self._tokens = tokens
        self._graph = graph
        self._default_tenant = default_tenant
        self._heartbeat = heartbeat
        self._rand = rand or random.Random()

    def deliver(self, job_id: str, index: int, lane: str, at: float = 0.0) -> Result:
        """Sends request `index` of job `job_id` if this copy of the task may: at most once, whoever races it.

        `at` is the slot the scheduler reserved for it under Graph's limits (Redis' clock): the request
        goes to Graph `SEND_ALLOWANCE` after it, or at once if it arrives later than that.
        """
        return self.deliver_many(lane, [(job_id, index)], at)[0]

    def deliver_many(
        self, lane: str, requests: list[tuple[str, int]], at: float = 0.0, check_first: bool = False
    ) -> list[Result]:
        """Sends handed requests of one lane (job id, index) one after another, each at most once: a bundle
        the scheduler handed out with pacing off, or one paced request with its slot `at`.

        All are claimed first, in one step, so none goes back to its lane while those before it are sent;
        the heartbeat keeps every lease. Before each send after the first (and before the first too with
        `check_first`, as a bundle's task asks), a pause or a cancel of its job, or, for a bulk job, the
        leader wanting a slot for a single send (`worker.bundles`), sends the rest back to their lane unsent,
        as does an exception for the request that raised.
        """
        token = uuid.uuid4().hex
        claims = self._lanes.claim_many(lane, requests, token)
        results: list[Result] = [Skipped(claim.status) for claim in claims]
        held: list[tuple[int, Lease, int]] = []
        for i, ((job_id, index), claim) in enumerate(zip(requests, claims, strict=True)):
            if claim.status != "claimed":
                continue
            lease = Lease(lane, keys.request_ref(job_id, index), token)
            if at:
                lease = replace(lease, send_after=lease.claimed_at + min(at + SEND_ALLOWANCE - claim.now, MAX_ALIGN))
            held.append((i, lease, claim.attempts))
            if self._heartbeat is not None:
                self._heartbeat.hold(lane, lease.ref, token)
        for n, (i, lease, attempts) in enumerate(held):
            job_id, index = requests[i]
            try:
                stop, request = self._read(job_id, index, check=n > 0 or check_first)
            except Exception:
                self._hand_back([lease for _, lease, _ in held[n:]])  # Redis away: their leases run out
                raise
            if stop:
                self._hand_back([lease for _, lease, _ in held[n:]])
                for j, _, _ in held[n:]:
                    results[j] = Skipped(stop)
                break
            try:
                results[i] = self._claimed(request, lease, attempts)
            except Exception as exc:
                self._give_back(lease, attempts, exc)
                self._hand_back([lease for _, lease, _ in held[n + 1 :]])
                raise
            finally:
                if self._heartbeat is not None:
                    self._heartbeat.release(lease.ref)
        return results

    def _hand_back(self, leases: list[Lease]) -> None:
        """Puts claimed requests that were not tried back in their lane, ready at once, their attempt
        uncounted (Redis away: their leases run out)."""
        for lease in leases:
            if self._heartbeat is not None:
                self._heartbeat.release(lease.ref)
            try:
                self._lanes.defer(lease.lane, lease.ref, lease.token, 0.0)
                self._jobs.uncount_attempt(*split_ref(lease.ref))
            except redis.RedisError:
                log.warning("request %s: Redis unreachable; it returns when its lease runs out", lease.ref)

    def _read(self, job_id: str, index: int, check: bool) -> tuple[str | None, Request | None]:
        """The request (None: no such job or request) and, when `check`, why the bundle should stop before
        it (`worker.bundles`): one round trip for both."""
        job = self._jobs.load(job_id)
        pipe = self._jobs.pipeline()
        if check:
            self._lanes.bundles.queue_check(pipe, job_id)
        if job is not None:
            self._jobs.queue_request(pipe, job, index)
        replies = pipe.execute() if len(pipe) else []
        bulk = job is not None and job.bulk  # only bulk work gives its slot up to a single send
        stop = self._lanes.bundles.reason(replies[:CHECKS], take_room=bulk) if check else None
        request = self._jobs.read_request(job, index, replies[CHECKS if check else 0 :]) if job is not None else None
        return stop, request

    def _claimed(self, request: Request | None, lease: Lease, attempts: int) -> Result:
        if request is None:
            self._lanes.abandon(lease.lane, lease.ref)
            return Skipped("no such job or request")
        if attempts > MAX_ATTEMPTS:  # every earlier attempt ended its task abruptly (a crash, a bug)
            return self._dead(request, RuntimeError(f"{attempts - 1} attempts ended without an answer"))
        tenant = request.job.tenant_id or self._default_tenant
        if tenant is None:
            return self._dead(request, AuthError("the job names no tenant and TEAMS_NOTIFY_TENANT_ID is not set"))
        return self._attempt(request, tenant, lease, attempts)

    def _attempt(self, request: Request, tenant: str, lease: Lease, attempts: int) -> Result:
        """Token, fences (the lease still held, the slot not missed), the send at its slot, the outcome."""
        started: float | None = None
        try:
            token = self._token(request, tenant)
            if not self._still_held(lease):
                return Skipped("lease lost before sending")
            if self._too_late(lease, attempts):
                return Skipped("late for its slot")
            self._wait_for_slot(lease)
            started = time.perf_counter()
            result = self._send(request, tenant, token)
            took = time.perf_counter() - started
        except (GraphError, AuthError) as exc:
            if isinstance(exc, GraphError) and started is not None:
                log_call(request, tenant, attempts, time.perf_counter() - started, exc)
            return self._failed(request, lease, attempts, exc)
        ended = persistently()(self._jobs.finish, request, "sent", request_id=result.request_id)
        if ended:
            _count_job_end(request.job, ended)
            observe.REQUESTS.labels(request.job.endpoint, "sent").inc()
            observe.TENANT_REQUESTS.labels(observe.tenant_label(tenant), "sent").inc()
            observe.RECIPIENTS_SENT.inc(request.recipients)
        log_call(request, tenant, attempts, took, result)
        return Sent(result)

    def _too_late(self, lease: Lease, attempts: int) -> bool:
        """A paced send that reaches its slot too late would come too close to the requests after it (Graph
        counts when requests arrive): it goes back to its lane for a new slot instead, a few times at most."""
        late = time.monotonic() - lease.send_after
        if not lease.send_after or late <= LATE_TOLERANCE or attempts > LATE_RETURNS:
            return False
        self._lanes.defer(lease.lane, lease.ref, lease.token, 0.0)
        log.info("request %s reached its slot %.0f ms late: back in its lane for another", lease.ref, late * 1000)
        return True

    def _wait_for_slot(self, lease: Lease) -> None:
        """Sends at the reserved slot plus the allowance (a few tens of milliseconds at most from now), so
        that paced requests reach Graph as evenly spaced as their slots."""
        wait = lease.send_after - time.monotonic()
        if wait > 0:
            self._sleep(wait)
        observe.SLOT_WAIT.observe(max(wait, 0.0))

    def _still_held(self, lease: Lease) -> bool:
        """Fencing before the send: after a long wait for a token, the lease is renewed or found lost (then
        the request went back to its lane and is someone else's to send)."""
        if time.monotonic() - lease.claimed_at < RENEW_EVERY:
            return True  # the claim itself is this recent
        return self._lanes.renew(lease.lane, lease.ref, lease.token)

    def _send(self, request: Request, tenant: str, token: str) -> GraphResult:
        """One request to Graph; a 412 or 401 gets one immediate retry with a fresh token."""
        try:
            return self._graph.post(request.job.path, request.body, token)
        except (TokenTooShortLived, Unauthorized) as exc:
            observe.RETRIES.labels(request.job.endpoint, "auth").inc()
            log.warning("Graph refused the token (%s); retrying with a fresh one", exc)
            self._tokens.invalidate(tenant)
            return self._graph.post(request.job.path, request.body, self._token(request, tenant))

    def _token(self, request: Request, tenant: str) -> str:
        """A bulk send needs a token with over 45 minutes left; other sends take the cached one."""
        if request.job.bulk:
            return self._tokens.token(tenant, BULK_TOKEN_MIN_LIFETIME, required=BULK_TOKEN_REQUIRED).value
        return self._tokens.token(tenant).value

    def _failed(self, request: Request, lease: Lease, attempts: int, exc: GraphError | AuthError) -> Result:
        """A transient failure waits in the lane until the attempts run out; anything else is dead-lettered."""
        transient = exc.transient if isinstance(exc, AuthError) else isinstance(exc, TransientGraphError)
        outage = isinstance(exc, AuthError) and transient  # Entra or our credential: nothing reached Graph
        if isinstance(exc, Throttled):
            if exc.status == 429:
                observe.THROTTLED.labels(request.job.endpoint).inc()
            if retry_after_of(exc) > 0:
                observe.RETRY_AFTER.observe(retry_after_of(exc))
        if not transient or (attempts >= MAX_ATTEMPTS and not outage):
            return self._dead(request, exc)
        delay = backoff(attempts, exc, self._rand)
        if outage:  # an outage of credentials waits as long as it lasts: it spends none of the request's attempts
            self._jobs.uncount_attempt(request.job.job_id, request.index)
        hold = retry_after_of(exc) if isinstance(exc, Throttled) else 0.0
        self._lanes.defer(lease.lane, lease.ref, lease.token, delay, hold)
        if isinstance(exc, Throttled) and exc.status == 429:
            pace = self._lanes.slow_down(lease.lane)
            log.warning("lane %s throttled by Graph: held %.2fs, pace now %.0f%%", lease.lane, hold, pace * 100)
        observe.REQUESTS.labels(request.job.endpoint, "retried").inc()
        observe.TENANT_REQUESTS.labels(
            observe.tenant_label(request.job.tenant_id or self._default_tenant), "retried"
        ).inc()
        observe.RETRIES.labels(request.job.endpoint, retry_cause(exc)).inc()
        log.log(
            logging.DEBUG if outage else logging.WARNING,  # the token code logs an outage once every few seconds
            "request %s/%s failed (%s); back in its lane for %.1fs",
            request.job.job_id,
            request.index,
            exc,
            delay,
        )
        return Deferred(delay, exc)

    def _dead(self, request: Request, exc: Exception) -> Result:
        job = request.job
        letter = deadletters.make(
            job_id=job.job_id,
            index=request.index,
            tenant_id=job.tenant_id,
            path=job.path,
            body=request.body,
            exc=exc,
            attempts=self._jobs.attempts(job.job_id, request.index),
        )
        dead = deadletters.encoded(letter)
        ended = persistently()(self._jobs.finish, request, "dead", dead, request_id=letter.request_id)
        if ended:
            _count_job_end(job, ended)
            observe.REQUESTS.labels(job.endpoint, "dead_lettered").inc()
            observe.TENANT_REQUESTS.labels(
                observe.tenant_label(job.tenant_id or self._default_tenant), "dead_lettered"
            ).inc()
            observe.RECIPIENTS_DEAD.inc(request.recipients)
            log.error("request %s/%s dead-lettered as %s: %s", job.job_id, request.index, letter.id, exc)
        return DeadLettered(letter)

    def _give_back(self, lease: Lease, attempts: int, exc: Exception) -> None:
        """After an unexpected error, the request goes back to its lane; if Redis is away, its lease runs out."""
        log.error("request %s failed unexpectedly (%s: %s); back in its lane", lease.ref, type(exc).__name__, exc)
        try:
            self._lanes.defer(lease.lane, lease.ref, lease.token, backoff(attempts, None, self._rand))
        except redis.RedisError:
            log.warning("request %s: Redis unreachable; it returns to its lane when its lease runs out", lease.ref)
