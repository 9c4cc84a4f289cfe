"""One Graph request's life in `Delivery`: real job records on a private Redis, Graph behind MockTransport."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from producers import Notifier, keys
from tests.unit.notification_examples import (
    CHAT,
    TEAM,
    TENANT,
    USER,
    bulk_body,
    chat_body,
    team_body,
    user_body,
    user_ids,
)
from worker.auth import AccessToken
from worker.config import GRAPH_RATE_LIMITS
from worker.deadletters import DeadLetterStore
from worker.delivery import BULK_TOKEN_MIN_LIFETIME, DeadLettered, Delivery, RetryLater, Sent, Skipped
from worker.errors import AuthError, Throttled
from worker.graph import GraphClient
from worker.jobs import LEASE_SECONDS, JobStore
from worker.ratelimit import PACING_MARGIN, RateLimiter
from worker.retrying import IN_PROCESS_ATTEMPTS, MAX_ATTEMPTS

GRAPH = "https://graph.microsoft.com/v1.0"
CONFLICT = (
    "Found multiple applications with the same AAD App ID 'a3111f15-658e-457c-9689-fd20fe907330' - "
    "a Teams Application ID is required to resolve which application is correct."
)
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeTokens:
    """A token provider that hands out numbered tokens with an hour left and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []
        self.invalidated: list[str] = []

    def token(self, tenant_id: str, min_lifetime: float = 0, required: float | None = None) -> AccessToken:
        self.asked.append((tenant_id, min_lifetime))
        return AccessToken(f"access-token-{len(self.asked)}", time.time() + 3600)

    def invalidate(self, tenant_id: str) -> None:
        self.invalidated.append(tenant_id)


class FakeGraph:
    """Graph's answers, in order (the last one repeats), and every request it received."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers) or [httpx.Response(204)]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    def tokens(self) -> list[str]:
        return [request.headers["Authorization"] for request in self.requests]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    inner = {"request-id": f"req-{status}", "client-request-id": "c", "date": "2026-11-24T08:00:00"}
    return httpx.Response(
        status, headers=headers, json={"error": {"code": code, "message": message, "innerError": inner}}
    )


class World:
    """A Notifier and a Delivery over the same Redis, Graph faked, waits recorded instead of slept."""

    def __init__(
        self,
        redis_url: str,
        store: redis.Redis,
        graph: FakeGraph,
        default_tenant: str | None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.notifier = Notifier(redis_url)
        self.store = store
        self.graph = graph
        self.tokens = FakeTokens()
        self.sleeps = Sleeps()
        self.client = GraphClient(GRAPH, transport=httpx.MockTransport(graph))
        self.now = time.time()
        self.delivery = Delivery(
            JobStore(store),
            self.tokens,  # type: ignore[arg-type]
            self.client,
            default_tenant,
            sleep=self.sleeps,
            clock=lambda: self.now,
            limiter=limiter,
        )
        self.dead_letters = DeadLetterStore(store)

    def deliver_all(self, job_id: str) -> list[Any]:
        total = self.notifier.status(job_id)["requests"]["total"]
        return [self.delivery.deliver(job_id, index) for index in range(total)]

    def close(self) -> None:
        self.client.close()
        self.notifier.close()


@pytest.fixture
def world_of(redis_url: str, store: redis.Redis) -> Iterator[Callable[..., World]]:
    worlds: list[World] = []

    def make(*answers: Answer, default_tenant: str | None = TENANT, limiter: RateLimiter | None = None) -> World:
        world = World(redis_url, store, FakeGraph(*answers), default_tenant, limiter)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.close()


def test_a_bulk_jobs_requests_are_each_sent_once_with_at_most_100_recipients(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    body = bulk_body(250)
    job_id = world.notifier.notify_recipients(body)

    results = world.deliver_all(job_id)

    assert all(isinstance(result, Sent) for result in results)
    assert [r.url.path for r in world.graph.requests] == ["/v1.0/teamwork/sendActivityNotificationToRecipients"] * 3
    sent = world.graph.bodies()
    assert [len(b["recipients"]) for b in sent] == [100, 100, 50]
    assert [r["userId"] for b in sent for r in b["recipients"]] == user_ids(250)
    recipients = body.pop("recipients")
    for index, request_body in enumerate(sent):
        assert request_body == {**body, "recipients": recipients[index * 100 : (index + 1) * 100]}


def test_graphs_request_id_of_each_request_is_kept_with_the_job(
    world_of: Callable[..., World], store: redis.Redis
) -> None:
    world = world_of(httpx.Response(202, headers={"request-id": "4b1f0c9e-graph-request-id"}))
    job_id = world.notifier.notify_recipients(bulk_body(150))

    world.deliver_all(job_id)

    assert JobStore(store).request_ids(job_id) == {0: "4b1f0c9e-graph-request-id", 1: "4b1f0c9e-graph-request-id"}


def test_a_job_whose_requests_were_all_accepted_is_completed(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250))

    world.deliver_all(job_id)

    assert world.notifier.status(job_id) == {
        "job_id": job_id,
        "state": "completed",
        "requests": {"total": 3, "sent": 3, "dead_lettered": 0, "pending": 0},
        "recipients": {"total": 250, "sent": 250, "dead_lettered": 0, "pending": 0},
    }


@pytest.mark.parametrize(
    ("notify", "path", "body"),
    [
        (
            lambda n: n.notify_user(USER, user_body()),
            f"/v1.0/users/{USER}/teamwork/sendActivityNotification",
            user_body(),
        ),
        (
            lambda n: n.notify_chat(CHAT, chat_body()),
            "/v1.0/chats/19%3Ad65713bc498c4a428c71ef9353e6ce20%40thread.v2/sendActivityNotification",
            chat_body(),
        ),
        (lambda n: n.notify_team(TEAM, team_body()), f"/v1.0/teams/{TEAM}/sendActivityNotification", team_body()),
    ],
)
def test_a_single_send_posts_its_body_to_its_path(
    world_of: Callable[..., World], notify: Callable[[Notifier], str], path: str, body: dict[str, Any]
) -> None:
    world = world_of(httpx.Response(204))
    job_id = notify(world.notifier)

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, Sent)
    (request,) = world.graph.requests
    assert request.url.raw_path.decode() == path
    assert json.loads(request.content) == body
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_409_is_dead_lettered_with_graphs_message(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202), graph_error(409, "Conflict", CONFLICT), httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250), tenant_id=TENANT)

    results = world.deliver_all(job_id)

    assert [type(r) for r in results] == [Sent, DeadLettered, Sent]
    assert len(world.graph.requests) == 3, "a 409 is not retried"
    (letter,) = world.dead_letters.list()
    assert letter == results[1].letter
    assert (letter.job_id, letter.request_index, letter.tenant_id) == (job_id, 1, TENANT)
    assert (letter.reason, letter.status) == ("conflict", 409)
    assert (letter.error.code, letter.error.message) == ("Conflict", CONFLICT)
    assert letter.request.method == "POST"
    assert letter.request.path == "/teamwork/sendActivityNotificationToRecipients"
    assert letter.request.body == world.graph.bodies()[1]
    assert letter.request_id == "req-409"
    assert letter.attempts == 1


def test_a_job_with_a_dead_lettered_request_is_completed_with_errors(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202), graph_error(409, "Conflict", CONFLICT), httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250))

    world.deliver_all(job_id)

    assert world.notifier.status(job_id) == {
        "job_id": job_id,
        "state": "completed_with_errors",
        "requests": {"total": 3, "sent": 2, "dead_lettered": 1, "pending": 0},
        "recipients": {"total": 250, "sent": 150, "dead_lettered": 100, "pending": 0},
    }


def test_a_job_is_sending_while_some_requests_are_pending(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250))

    world.delivery.deliver(job_id, 0)

    assert world.notifier.status(job_id)["state"] == "sending"


def test_a_400_is_dead_lettered_at_once_as_rejected(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(400, "BadRequest", "Invalid activity type"))
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, DeadLettered)
    assert (result.letter.reason, result.letter.status, result.letter.error.message) == (
        "rejected",
        400,
        "Invalid activity type",
    )
    assert len(world.graph.requests) == 1


def test_a_429_then_a_204_is_sent_after_honouring_retry_after(world_of: Callable[..., World]) -> None:
    world = world_of(
        graph_error(429, "TooManyRequests", "Too many requests", {"Retry-After": "2.5"}), httpx.Response(204)
    )
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, Sent)
    assert len(world.graph.requests) == 2
    assert sum(world.sleeps.waits) >= 2.5
    assert max(world.sleeps.waits) >= 2.5
    assert world.notifier.status(job_id)["state"] == "completed"


def test_repeated_503s_come_back_later_through_celery_no_sooner_than_retry_after(
    world_of: Callable[..., World],
) -> None:
    world = world_of(graph_error(503, "ServiceNotAvailable", "Try later", {"Retry-After": "4"}))
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, RetryLater)
    assert isinstance(result.error, Throttled)
    assert result.countdown >= 4
    assert len(world.graph.requests) == 3
    assert all(wait >= 4 for wait in world.sleeps.waits)
    assert world.notifier.status(job_id)["state"] == "queued"
    assert world.dead_letters.count() == 0


def test_a_long_retry_after_is_not_slept_in_the_worker(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(429, "TooManyRequests", "Slow down", {"Retry-After": "120"}))
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, RetryLater)
    assert result.countdown >= 120
    assert len(world.graph.requests) == 1
    assert world.sleeps.waits == []


def test_a_request_retried_later_is_sent_on_its_next_run(world_of: Callable[..., World]) -> None:
    world = world_of(*[graph_error(503, "ServiceNotAvailable", "Try later")] * 3, httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())

    first = world.delivery.deliver(job_id, 0)
    assert isinstance(first, RetryLater)
    early = world.delivery.deliver(job_id, 0)  # a copy run before its time waits with it
    assert isinstance(early, RetryLater)
    assert 0 < early.countdown <= first.countdown + 1e-6  # stored as text in Redis: float rounding
    assert len(world.graph.requests) == 3

    world.now += first.countdown
    second = world.delivery.deliver(job_id, 0)

    assert isinstance(second, Sent)
    assert world.notifier.status(job_id)["state"] == "completed"


def test_delivering_the_same_request_twice_sends_it_once(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())

    first = world.delivery.deliver(job_id, 0)
    second = world.delivery.deliver(job_id, 0)

    assert isinstance(first, Sent)
    assert isinstance(second, Skipped)
    assert len(world.graph.requests) == 1
    assert world.notifier.status(job_id)["requests"] == {"total": 1, "sent": 1, "dead_lettered": 0, "pending": 0}


def test_a_dead_lettered_request_is_not_sent_again(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(409, "Conflict", CONFLICT))
    job_id = world.notifier.notify_user(USER, user_body())

    world.delivery.deliver(job_id, 0)
    again = world.delivery.deliver(job_id, 0)

    assert isinstance(again, Skipped)
    assert len(world.graph.requests) == 1
    assert world.dead_letters.count() == 1


def test_a_request_another_worker_holds_comes_back_when_its_lease_ends_and_is_then_sent(
    world_of: Callable[..., World], store: redis.Redis
) -> None:
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())

    with JobStore(store).lease(job_id, 0, "a-worker-that-died") as held:
        assert held
        result = world.delivery.deliver(job_id, 0)
    assert isinstance(result, RetryLater)
    assert LEASE_SECONDS - 2 <= result.countdown <= LEASE_SECONDS + 1
    assert world.graph.requests == []

    assert isinstance(world.delivery.deliver(job_id, 0), Sent)  # the lease has ended
    assert len(world.graph.requests) == 1


@pytest.mark.parametrize(("job_id", "index"), [("no-such-job", 0), (None, 1), (None, -1)])
def test_a_missing_job_or_request_is_skipped(world_of: Callable[..., World], job_id: str | None, index: int) -> None:
    world = world_of(httpx.Response(204))
    job_id = job_id or world.notifier.notify_user(USER, user_body())

    assert isinstance(world.delivery.deliver(job_id, index), Skipped)
    assert world.graph.requests == []


def test_bulk_sends_ask_for_a_token_with_at_least_45_minutes_left(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250), tenant_id="contoso.onmicrosoft.com")

    world.deliver_all(job_id)

    assert len(world.tokens.asked) == 3
    assert all(tenant == "contoso.onmicrosoft.com" for tenant, _ in world.tokens.asked)
    assert all(lifetime >= 45 * 60 for _, lifetime in world.tokens.asked)
    assert BULK_TOKEN_MIN_LIFETIME >= 45 * 60


def test_single_sends_take_any_valid_token(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(204))

    world.deliver_all(world.notifier.notify_user(USER, user_body()))
    world.deliver_all(world.notifier.notify_team(TEAM, team_body()))

    assert [tenant for tenant, _ in world.tokens.asked] == [TENANT, TENANT]
    assert all(lifetime < 45 * 60 for _, lifetime in world.tokens.asked)


def test_a_412_invalidates_the_token_and_retries_once_with_a_fresh_one(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(412, "PreconditionFailed", "Token expires within 45 minutes"), httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(3))

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, Sent)
    assert world.tokens.invalidated == [TENANT]
    assert world.graph.tokens() == ["Bearer access-token-1", "Bearer access-token-2"]
    assert all(lifetime >= 45 * 60 for _, lifetime in world.tokens.asked)


def test_a_second_412_is_dead_lettered_for_a_person(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(412, "PreconditionFailed", "Token expires within 45 minutes"))
    job_id = world.notifier.notify_recipients(bulk_body(3))

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, DeadLettered)
    assert result.letter.reason == "token_lifetime"
    assert len(world.graph.requests) == 2
    assert world.tokens.invalidated == [TENANT]


def test_a_401_invalidates_the_token_and_retries_with_a_fresh_one(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(401, "InvalidAuthenticationToken", "Access token has expired"), httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, Sent)
    assert world.tokens.invalidated == [TENANT]
    assert world.graph.tokens() == ["Bearer access-token-1", "Bearer access-token-2"]


def test_a_job_without_a_tenant_and_no_default_is_dead_lettered(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(204), default_tenant=None)
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, DeadLettered)
    assert result.letter.reason == "auth"
    assert "tenant" in result.letter.error.message.lower()
    assert world.graph.requests == []
    assert world.tokens.asked == []
    assert world.dead_letters.get(result.letter.id) == result.letter
    assert world.notifier.status(job_id)["state"] == "completed_with_errors"


def test_a_jobs_own_tenant_wins_over_the_default(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(204), default_tenant=TENANT)

    world.deliver_all(world.notifier.notify_user(USER, user_body(), tenant_id="fabrikam.onmicrosoft.com"))

    assert [tenant for tenant, _ in world.tokens.asked] == ["fabrikam.onmicrosoft.com"]


def test_a_dead_letter_never_holds_the_access_token(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(409, "Conflict", CONFLICT))
    job_id = world.notifier.notify_user(USER, user_body())

    world.deliver_all(job_id)

    stored = world.store.hvals(keys.dead_letters())
    assert stored
    assert not any("access-token-" in raw or "Bearer" in raw for raw in stored)


def test_a_request_that_keeps_failing_is_dead_lettered_after_its_last_attempt(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(502, "BadGateway", "Bad gateway"))
    job_id = world.notifier.notify_user(USER, user_body())

    results = []
    for _ in range(MAX_ATTEMPTS // IN_PROCESS_ATTEMPTS):
        results.append(world.delivery.deliver(job_id, 0))
        world.now += getattr(results[-1], "countdown", 0)  # Celery runs it again when it is due

    assert all(isinstance(r, RetryLater) for r in results[:-1])
    assert isinstance(results[-1], DeadLettered)
    assert results[-1].letter.reason == "retries_exhausted"
    assert results[-1].letter.attempts == MAX_ATTEMPTS
    assert len(world.graph.requests) == MAX_ATTEMPTS
    assert world.notifier.status(job_id)["state"] == "completed_with_errors"


def test_a_dropped_connection_comes_back_later(world_of: Callable[..., World]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    world = world_of(refuse)
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, RetryLater)
    assert result.countdown > 0
    assert world.dead_letters.count() == 0


@pytest.mark.parametrize(("transient", "expected"), [(True, RetryLater), (False, DeadLettered)])
def test_entra_refusing_a_token_is_retried_only_when_it_may_pass(
    world_of: Callable[..., World], transient: bool, expected: type
) -> None:
    world = world_of(httpx.Response(204))

    def refuse(tenant_id: str, min_lifetime: float = 0) -> AccessToken:
        raise AuthError(
            f"Entra refused a token for tenant {tenant_id}: invalid_client: bad secret", transient=transient
        )

    world.tokens.token = refuse  # type: ignore[method-assign]
    job_id = world.notifier.notify_user(USER, user_body())

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, expected)
    assert world.graph.requests == []
    if isinstance(result, DeadLettered):
        assert result.letter.reason == "auth"
        assert "invalid_client" in result.letter.error.message


def test_a_request_over_the_fleets_rate_comes_back_when_a_permit_is_due(
    world_of: Callable[..., World], store: redis.Redis
) -> None:
    limits = {**GRAPH_RATE_LIMITS, "bulk_tenant": 0.01}  # one bulk request every 100 s
    limiter = RateLimiter(store, limits, "a3111f15-658e-457c-9689-fd20fe907330")
    world = world_of(httpx.Response(202), limiter=limiter)
    job_id = world.notifier.notify_recipients(bulk_body(250))

    first, second, _ = world.deliver_all(job_id)

    assert isinstance(first, Sent)
    assert isinstance(second, RetryLater)
    assert 90 <= second.countdown <= 100 + PACING_MARGIN
    assert len(world.graph.requests) == 1
