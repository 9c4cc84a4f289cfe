"""`Delivery` when Graph or Entra says no: retries and backoff, 429 and Retry-After, dead letters, and tokens.

Real job records and lanes on a private Redis, Graph behind MockTransport; the world is in
`tests.unit.delivery_world`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from producers import keys
from tests.unit.delivery_world import CONFLICT, World, graph_error, world_of
from tests.unit.notification_examples import TEAM, TENANT, USER, bulk_body, team_body, user_body
from worker.auth import AccessToken
from worker.delivery import BULK_TOKEN_MIN_LIFETIME, DeadLettered, Deferred, Sent, Skipped
from worker.errors import AuthError, Throttled
from worker.lanes import pace_of
from worker.retrying import FIRST_BACKOFF, MAX_ATTEMPTS

__all__ = ["world_of"]  # the fixture, from the shared world of the delivery tests


def test_a_409_is_dead_lettered_with_graphs_message_and_its_job_completes_with_errors(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(202), graph_error(409, "Conflict", CONFLICT), httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250), tenant_id=TENANT)

    results = world.deliver_all(job_id)

    assert [type(r) for r in results] == [Sent, DeadLettered, Sent]
    assert len(world.graph.requests) == 3, "a 409 is not retried"
    (letter,) = world.dead_letters.list()
    assert isinstance(results[1], DeadLettered)
    assert letter == results[1].letter
    assert (letter.job_id, letter.request_index, letter.tenant_id) == (job_id, 1, TENANT)
    assert (letter.reason, letter.status) == ("conflict", 409)
    assert (letter.error.code, letter.error.message) == ("Conflict", CONFLICT)
    assert (letter.request.method, letter.request.path) == ("POST", "/teamwork/sendActivityNotificationToRecipients")
    assert letter.request.body == world.graph.bodies()[1]
    assert (letter.request_id, letter.attempts) == ("req-409", 1)
    status = world.notifier.status(job_id)
    assert status["state"] == "completed_with_errors"
    assert (status["requests"]["sent"], status["requests"]["dead_lettered"], status["requests"]["pending"]) == (2, 1, 0)
    assert (status["recipients"]["sent"], status["recipients"]["dead_lettered"]) == (150, 100)


def test_a_400_is_dead_lettered_at_once_as_rejected(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(400, "BadRequest", "Invalid activity type"))
    job_id = world.notifier.notify_user(USER, user_body())

    result = world.deliver(job_id)

    assert isinstance(result, DeadLettered)
    assert (result.letter.reason, result.letter.status, result.letter.error.message) == (
        "rejected",
        400,
        "Invalid activity type",
    )
    assert len(world.graph.requests) == 1


def test_a_429_defers_the_request_past_retry_after_holds_its_lane_and_lowers_its_pace(
    world_of: Callable[..., World],
) -> None:
    world = world_of(graph_error(429, "TooManyRequests", "Slow down", {"Retry-After": "2.5"}), httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())
    lane, before = world.lane_of(job_id), world.lanes.now()

    result = world.deliver(job_id)

    assert isinstance(result, Deferred)
    assert isinstance(result.error, Throttled)
    assert result.delay >= 2.5
    assert world.where(job_id) == {"lane"}
    assert world.store.zscore(keys.lane(lane), keys.request_ref(job_id, 0)) >= before + 2.5
    (state,) = world.lanes.states([lane])
    assert state.held_until >= before + 2.5
    assert state.pace < 1
    assert pace_of(world.store.hgetall(keys.lane_pace(lane)), state.now + 10) > state.pace, "and climbs back"
    assert (world.notifier.status(job_id)["state"], world.dead_letters.count()) == ("sending", 0)

    assert isinstance(world.deliver(job_id), Sent)  # handed again once its time has come
    assert len(world.graph.requests) == 2
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_503_without_retry_after_backs_off_longer_at_each_attempt_without_holding_the_lane(
    world_of: Callable[..., World],
) -> None:
    world = world_of(graph_error(503, "ServiceNotAvailable", "Try later"))
    job_id = world.notifier.notify_user(USER, user_body())
    lane = world.lane_of(job_id)

    first, second = world.deliver(job_id), world.deliver(job_id)

    assert isinstance(first, Deferred)
    assert isinstance(second, Deferred)
    assert 0 < first.delay <= FIRST_BACKOFF < second.delay
    assert world.store.get(keys.lane_hold(lane)) is None
    assert not world.store.exists(keys.lane_pace(lane))
    assert world.where(job_id) == {"lane"}


def test_a_dead_lettered_request_is_not_sent_again(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(409, "Conflict", CONFLICT))
    job_id = world.notifier.notify_user(USER, user_body())

    world.deliver(job_id)
    again = world.deliver(job_id)

    assert again == Skipped("ended")
    assert len(world.graph.requests) == 1
    assert world.dead_letters.count() == 1


def test_bulk_sends_ask_for_a_token_with_at_least_45_minutes_left(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250), tenant_id="contoso.onmicrosoft.com")

    world.deliver_all(job_id)

    assert len(world.tokens.asked) == 3
    assert all(tenant == "contoso.onmicrosoft.com" for tenant, _, _ in world.tokens.asked)
    assert all(lifetime >= 45 * 60 and (required or 0) >= 45 * 60 for _, lifetime, required in world.tokens.asked)
    assert BULK_TOKEN_MIN_LIFETIME >= 45 * 60


def test_single_sends_take_any_valid_token_of_their_own_tenant_else_the_default(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(204))

    world.deliver_all(world.notifier.notify_user(USER, user_body()))
    world.deliver_all(world.notifier.notify_team(TEAM, team_body(), tenant_id="fabrikam.onmicrosoft.com"))

    assert [tenant for tenant, _, _ in world.tokens.asked] == [TENANT, "fabrikam.onmicrosoft.com"]
    assert all(lifetime < 45 * 60 for _, lifetime, _ in world.tokens.asked)


def test_a_412_invalidates_the_token_and_retries_once_with_a_fresh_one(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(412, "PreconditionFailed", "Token expires within 45 minutes"), httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(3))

    assert isinstance(world.deliver(job_id), Sent)
    assert world.tokens.invalidated == [TENANT]
    assert world.graph.tokens() == ["Bearer access-token-1", "Bearer access-token-2"]
    assert all(lifetime >= 45 * 60 for _, lifetime, _ in world.tokens.asked)


def test_a_second_412_is_dead_lettered_for_a_person(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(412, "PreconditionFailed", "Token expires within 45 minutes"))
    job_id = world.notifier.notify_recipients(bulk_body(3))

    result = world.deliver(job_id)

    assert isinstance(result, DeadLettered)
    assert result.letter.reason == "token_lifetime"
    assert len(world.graph.requests) == 2
    assert world.tokens.invalidated == [TENANT]


def test_a_401_invalidates_the_token_and_retries_with_a_fresh_one(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(401, "InvalidAuthenticationToken", "Access token has expired"), httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())

    assert isinstance(world.deliver(job_id), Sent)
    assert world.tokens.invalidated == [TENANT]
    assert world.graph.tokens() == ["Bearer access-token-1", "Bearer access-token-2"]


def test_a_job_without_a_tenant_and_no_default_is_dead_lettered(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(204), default_tenant=None)
    job_id = world.notifier.notify_user(USER, user_body())

    result = world.deliver(job_id)

    assert isinstance(result, DeadLettered)
    assert result.letter.reason == "auth"
    assert "tenant" in result.letter.error.message.lower()
    assert (world.graph.requests, world.tokens.asked) == ([], [])
    assert world.dead_letters.get(result.letter.id) == result.letter
    assert world.notifier.status(job_id)["state"] == "completed_with_errors"


def test_a_dead_letter_never_holds_the_access_token(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(409, "Conflict", CONFLICT))
    world.deliver_all(world.notifier.notify_user(USER, user_body()))

    stored = world.store.hvals(keys.dead_letters())
    assert stored
    assert not any("access-token-" in raw or "Bearer" in raw for raw in stored)


def test_a_request_that_keeps_failing_is_dead_lettered_after_its_last_attempt(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(502, "BadGateway", "Bad gateway"))
    job_id = world.notifier.notify_user(USER, user_body())

    results = [world.deliver(job_id) for _ in range(MAX_ATTEMPTS)]

    assert all(isinstance(r, Deferred) for r in results[:-1])
    last = results[-1]
    assert isinstance(last, DeadLettered)
    assert (last.letter.reason, last.letter.attempts) == ("retries_exhausted", MAX_ATTEMPTS)
    assert len(world.graph.requests) == MAX_ATTEMPTS
    assert world.notifier.status(job_id)["state"] == "completed_with_errors"


def test_a_dropped_connection_is_deferred(world_of: Callable[..., World]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    world = world_of(refuse)
    job_id = world.notifier.notify_user(USER, user_body())

    result = world.deliver(job_id)

    assert isinstance(result, Deferred)
    assert result.delay > 0
    assert world.dead_letters.count() == 0
    assert world.where(job_id) == {"lane"}


@pytest.mark.parametrize(("transient", "expected"), [(True, Deferred), (False, DeadLettered)])
def test_entra_refusing_a_token_is_retried_only_when_it_may_pass(
    world_of: Callable[..., World], transient: bool, expected: type
) -> None:
    world = world_of(httpx.Response(204))

    def refuse(tenant_id: str, min_lifetime: float = 0, required: float | None = None) -> AccessToken:
        raise AuthError(
            f"Entra refused a token for tenant {tenant_id}: invalid_client: bad secret", transient=transient
        )

    world.tokens.token = refuse  # type: ignore[method-assign]
    job_id = world.notifier.notify_user(USER, user_body())

    result = world.deliver(job_id)

    assert isinstance(result, expected)
    assert world.graph.requests == []
    if isinstance(result, DeadLettered):
        assert result.letter.reason == "auth"
        assert "invalid_client" in result.letter.error.message
