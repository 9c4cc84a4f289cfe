"""One Graph request's life: lease, token, send (with short retries), classify, record.

`Delivery.deliver` is what the send task runs. It returns what happened; the task turns a `RetryLater`
into a Celery re-schedule. Every request ends exactly once: sent, or dead-lettered for a person.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from worker import deadletters, observe
from worker.auth import TokenProvider
from worker.errors import AuthError, GraphError, TokenTooShortLived, TransientGraphError, Unauthorized
from worker.graph import GraphClient, GraphResult
from worker.jobs import JobStore, Request
from worker.ratelimit import RateLimiter
from worker.retrying import MAX_ATTEMPTS, celery_countdown, in_process

log = logging.getLogger(__name__)

#: Graph refuses a bulk send whose token has less than 45 minutes left (412): a cached token with less
#: than this is replaced by a fresh one, which must have at least BULK_TOKEN_REQUIRED left.
BULK_TOKEN_MIN_LIFETIME = 45 * 60 + 120
BULK_TOKEN_REQUIRED = 45 * 60 + 10
#: The longest a worker slot waits for a rate-limit permit; a longer wait goes back to Celery.
MAX_PERMIT_WAIT = 10.0


class LeaseHeld(Exception):
    """Another worker is sending this request right now (or died doing so)."""


class Paced(Exception):
    """The fleet is at Graph's rate limit for this request: come back after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"paced at Graph's rate limits for {retry_after:.2f}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Sent:
    """Graph accepted the request."""

    result: GraphResult


@dataclass(frozen=True)
class DeadLettered:
    """The request needs a person; its dead letter says why."""

    letter: deadletters.DeadLetter


@dataclass(frozen=True)
class Skipped:
    """Nothing to do: the request already ended, another worker holds it, or its job is gone."""

    why: str


@dataclass(frozen=True)
class RetryLater:
    """A transient failure: try again through Celery after `countdown` seconds."""

    countdown: float
    error: Exception


Result = Sent | DeadLettered | Skipped | RetryLater


class Delivery:
    """Sends the requests of jobs, with the process's pooled Graph client and token provider."""

    def __init__(
        self,
        jobs: JobStore,
        tokens: TokenProvider,
        graph: GraphClient,
        default_tenant: str | None,
        sleep: Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._limiter = limiter
        self._jobs = jobs
        self._tokens = tokens
        self._graph = graph
        self._default_tenant = default_tenant
        self._sleep = sleep

    def deliver(self, job_id: str, index: int) -> Result:
        """Sends request `index` of job `job_id`, once, whoever else holds the same task."""
        job = self._jobs.load(job_id)
        if job is None:
            return Skipped("no such job")
        request = self._jobs.request(job, index)
        if request is None:
            return Skipped(f"job has no request {index}")
        if self._jobs.outcome(job_id, index) is not None:
            return Skipped("already ended")
        not_before = self._jobs.not_before(job_id, index) - self._clock()
        if not_before > 0:  # a copy of a request that must wait (Retry-After): wait with it
            return RetryLater(not_before, Paced(not_before))
        with self._jobs.lease(job_id, index, str(uuid.uuid4())) as held:
            if not held:
                # Never drop it: the holder may have died mid-send. Once its lease ends, this copy either
                # finds the request ended (the holder finished) or sends it.
                wait = self._jobs.lease_left(job_id, index) + 1.0
                return RetryLater(wait, LeaseHeld(f"another worker holds request {index}; back in {wait:.0f}s"))
            return self._attempt(request)

    def _attempt(self, request: Request) -> Result:
        job = request.job
        tenant = job.tenant_id or self._default_tenant
        if tenant is None:
            error = AuthError("the job names no tenant and TEAMS_NOTIFY_TENANT_ID is not set")
            return self._dead(request, error)
        try:
            result = in_process(self._sleep)(self._send, request, tenant)
        except Paced as paced:
            observe.REQUESTS.labels(job.endpoint, "paced").inc()
            return RetryLater(paced.retry_after, paced)
        except (GraphError, AuthError) as exc:
            return self._failed(request, exc)
        if self._jobs.finish(request, "sent", request_id=result.request_id):
            observe.REQUESTS.labels(job.endpoint, "sent").inc()
            observe.RECIPIENTS_SENT.inc(request.recipients)
            log.info(
                "request %s/%s sent: HTTP %s request-id %s",
                job.job_id,
                request.index,
                result.status,
                result.request_id,
            )
        return Sent(result)

    def _failed(self, request: Request, exc: GraphError | AuthError) -> Result:
        """A transient failure comes back later until the attempts run out; anything else is dead-lettered."""
        transient = exc.transient if isinstance(exc, AuthError) else isinstance(exc, TransientGraphError)
        attempts = self._jobs.attempts(request.job.job_id, request.index)
        if not transient or attempts >= MAX_ATTEMPTS:
            return self._dead(request, exc)
        countdown = celery_countdown(attempts, exc)
        self._jobs.defer(request.job.job_id, request.index, self._clock() + countdown)
        observe.REQUESTS.labels(request.job.endpoint, "retried").inc()
        log.warning("request %s/%s failed (%s); retrying in %.1fs", request.job.job_id, request.index, exc, countdown)
        return RetryLater(countdown, exc)

    def _send(self, request: Request, tenant: str) -> GraphResult:
        """One attempt; a 412 or 401 gets one immediate retry with a fresh token."""
        self._permit(request, tenant)
        self._jobs.attempt(request.job.job_id, request.index)
        try:
            return self._graph.post(request.job.path, request.body, self._token(request, tenant))
        except (TokenTooShortLived, Unauthorized) as exc:
            log.warning("Graph refused the token (%s); retrying with a fresh one", exc)
            self._tokens.invalidate(tenant)
            self._permit(request, tenant)
            self._jobs.attempt(request.job.job_id, request.index)
            return self._graph.post(request.job.path, request.body, self._token(request, tenant))

    def _token(self, request: Request, tenant: str) -> str:
        """A bulk send needs a token with over 45 minutes left; other sends take MSAL's cached one."""
        if request.job.bulk:
            return self._tokens.token(tenant, BULK_TOKEN_MIN_LIFETIME, required=BULK_TOKEN_REQUIRED).value
        return self._tokens.token(tenant).value

    def _permit(self, request: Request, tenant: str) -> None:
        """Waits (briefly) for a permit under Graph's limits; raises Paced when the wait would be long."""
        if self._limiter is None:
            return
        limits = self._limiter.limits_for(request.job, tenant, _single_user(request))
        waited = 0.0
        while (wait := self._limiter.acquire(limits)) > 0:
            if waited + wait > MAX_PERMIT_WAIT:
                raise Paced(wait)
            self._sleep(wait)
            waited += wait

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
        if self._jobs.finish(request, "dead", deadletters.encoded(letter), request_id=letter.request_id):
            observe.REQUESTS.labels(job.endpoint, "dead_lettered").inc()
            log.error("request %s/%s dead-lettered as %s: %s", job.job_id, request.index, letter.id, exc)
        return DeadLettered(letter)


def _single_user(request: Request) -> str | None:
    """The one user a single send notifies, for the per-user limit (None for bulk and members sends)."""
    job = request.job
    if job.endpoint == "user":
        return job.target
    recipient = request.body.get("recipient") or {}
    return recipient.get("userId") if isinstance(recipient, dict) else None
