"""One Graph request's life in `Delivery`: real job records and lanes on a private Redis, Graph behind MockTransport.

Each test plays the scheduler's part (`World.hand`: the request made ready and handed out), then runs the send
task's `Delivery.deliver` as a worker would.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from producers import Notifier, keys
from tests.unit.notification_examples import CHAT, TEAM, TENANT, USER, bulk_body, chat_body, team_body, user_body
from tests.unit.notification_examples import user_ids as ids_of
from worker import delivery as delivery_module
from worker import lanes as lanes_module
from worker.auth import AccessToken
from worker.deadletters import DeadLetterStore
from worker.delivery import (
    BULK_TOKEN_MIN_LIFETIME,
    LATE_RETURNS,
    DeadLettered,
    Deferred,
    Delivery,
    Result,
    Sent,
    Skipped,
)
from worker.errors import AuthError, Throttled
from worker.graph import GraphClient
from worker.heartbeat import Heartbeat
from worker.jobs import Job, JobStore
from worker.lanes import SEND_ALLOWANCE, Claim, LaneStore, pace_of
from worker.ratelimit import Permit
from worker.retrying import FIRST_BACKOFF, MAX_ATTEMPTS

GRAPH = "https://graph.microsoft.com/v1.0"
CONFLICT = (
    "Found multiple applications with the same AAD App ID 'a3111f15-658e-457c-9689-fd20fe907330' - "
    "a Teams Application ID is required to resolve which application is correct."
)
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def as_pair(claim: Claim) -> tuple[str, int]:
    """A claim's status and attempts."""
    return claim.status, claim.attempts


def granted(permit: Permit | None) -> bool:
    """True when the hand-out went through (a permit for a slot)."""
    return permit is not None and permit.wait == 0


class FakeTokens:
    """A token provider that hands out numbered tokens with an hour left and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float, float | None]] = []
        self.invalidated: list[str] = []

    def token(self, tenant_id: str, min_lifetime: float = 0, required: float | None = None) -> AccessToken:
        self.asked.append((tenant_id, min_lifetime, required))
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


class JobsAway(JobStore):
    """A job store whose Redis went away after the request was claimed."""

    def load(self, job_id: str) -> Job | None:
        raise redis.ConnectionError("Error 111 connecting to redis: Connection refused")


class LanesAway(LaneStore):
    """Lanes whose Redis went away after the claim: the request cannot even be put back."""

    def defer(self, lane: str, ref: str, token: str, delay: float, hold: float = 0.0) -> bool:
        raise redis.ConnectionError("Error 111 connecting to redis: Connection refused")


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    inner = {"request-id": f"req-{status}", "client-request-id": "c", "date": "2026-11-24T08:00:00"}
    return httpx.Response(
        status, headers=headers, json={"error": {"code": code, "message": message, "innerError": inner}}
    )


class World:
    """A Notifier and a Delivery over the same Redis, Graph faked; the test plays the scheduler."""

    def __init__(self, redis_url: str, store: redis.Redis, graph: FakeGraph, default_tenant: str | None) -> None:
        self.notifier = Notifier(redis_url)
        self.store = store
        self.graph = graph
        self.tokens = FakeTokens()
        self.client = GraphClient(GRAPH, transport=httpx.MockTransport(graph))
        self.jobs = JobStore(store)
        self.lanes = LaneStore(store)
        self.default_tenant = default_tenant
        self.delivery = self.new_delivery()
        self.dead_letters = DeadLetterStore(store)

    def new_delivery(
        self, jobs: JobStore | None = None, lanes: LaneStore | None = None, heartbeat: Heartbeat | None = None
    ) -> Delivery:
        """Another worker's Delivery (the same Graph and tokens)."""
        tokens: Any = self.tokens
        jobs, lanes = jobs or self.jobs, lanes or self.lanes
        return Delivery(jobs, lanes, tokens, self.client, self.default_tenant, heartbeat, random.Random(7))

    def lane_of(self, job_id: str) -> str:
        job = self.jobs.load(job_id)
        return job.lane if job else keys.lane_id(None, bulk=False)

    def hand(self, job_id: str, index: int = 0) -> str:
        """The scheduler's part: the request is made ready (its delay over) and handed out; returns its lane."""
        lane = self.lane_of(job_id)
        ref = keys.request_ref(job_id, index)
        self.store.zadd(keys.lane(lane), {ref: 0})
        assert granted(self.lanes.hand(lane, ref))
        return lane

    def deliver(self, job_id: str, index: int = 0) -> Result:
        return self.delivery.deliver(job_id, index, self.hand(job_id, index))

    def deliver_all(self, job_id: str) -> list[Result]:
        total = self.notifier.status(job_id)["requests"]["total"]
        return [self.deliver(job_id, index) for index in range(total)]

    def where(self, job_id: str, index: int = 0) -> set[str]:
        """Where the request is: in its lane, handed, in flight, leased."""
        lane, ref = self.lane_of(job_id), keys.request_ref(job_id, index)
        sets = {"lane": keys.lane(lane), "handed": keys.lane_handed(lane), "in flight": keys.lane_in_flight(lane)}
        found = {name for name, key in sets.items() if self.store.zscore(key, ref) is not None}
        return found | ({"leased"} if self.store.hexists(keys.leases(), ref) else set())

    def close(self) -> None:
        self.client.close()
        self.notifier.close()


@pytest.fixture
def world_of(redis_url: str, store: redis.Redis) -> Iterator[Callable[..., World]]:
    worlds: list[World] = []

    def make(*answers: Answer, default_tenant: str | None = TENANT) -> World:
        world = World(redis_url, store, FakeGraph(*answers), default_tenant)
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
    assert [r["userId"] for b in sent for r in b["recipients"]] == ids_of(250)
    recipients = body.pop("recipients")
    for index, request_body in enumerate(sent):
        assert request_body == {**body, "recipients": recipients[index * 100 : (index + 1) * 100]}


def test_graphs_request_id_of_each_request_is_kept_with_the_job(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202, headers={"request-id": "4b1f0c9e-graph-request-id"}))
    job_id = world.notifier.notify_recipients(bulk_body(150))

    world.deliver_all(job_id)

    assert world.jobs.request_ids(job_id) == {0: "4b1f0c9e-graph-request-id", 1: "4b1f0c9e-graph-request-id"}


def test_a_bulk_job_is_sending_until_all_its_requests_are_accepted_then_completed(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250))

    world.deliver(job_id, 0)
    assert world.notifier.status(job_id)["state"] == "sending"
    world.deliver(job_id, 1)
    world.deliver(job_id, 2)

    status = world.notifier.status(job_id)
    assert status["state"] == "completed"
    assert (status["requests"]["sent"], status["requests"]["pending"]) == (3, 0)
    assert (status["recipients"]["sent"], status["recipients"]["pending"]) == (250, 0)
    assert world.where(job_id) == set()


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


def test_a_dead_lettered_request_is_not_sent_again(world_of: Callable[..., World]) -> None:
    world = world_of(graph_error(409, "Conflict", CONFLICT))
    job_id = world.notifier.notify_user(USER, user_body())

    world.deliver(job_id)
    again = world.deliver(job_id)

    assert again == Skipped("ended")
    assert len(world.graph.requests) == 1
    assert world.dead_letters.count() == 1


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


def test_a_claim_while_paused_sends_nothing_and_after_resume_the_request_is_sent(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())
    world.store.set(keys.paused(), "1")

    assert world.deliver(job_id) == Skipped("paused")
    assert world.graph.requests == []
    assert world.where(job_id) == {"lane"}

    world.store.delete(keys.paused())
    assert isinstance(world.deliver(job_id), Sent)
    assert len(world.graph.requests) == 1


def test_a_request_in_flight_when_its_job_is_cancelled_is_cancelled_if_it_comes_back(
    world_of: Callable[..., World],
) -> None:
    def cancel_then_fail(request: httpx.Request) -> httpx.Response:
        world.notifier.cancel(job_id)  # while the request is in flight
        return graph_error(503, "ServiceNotAvailable", "Try later")

    world = world_of(cancel_then_fail)
    job_id = world.notifier.notify_user(USER, user_body())

    assert isinstance(world.deliver(job_id), Deferred)
    assert world.deliver(job_id) == Skipped("cancelled")

    assert len(world.graph.requests) == 1
    status = world.notifier.status(job_id)
    assert (status["state"], status["requests"]["cancelled"], status["requests"]["pending"]) == ("cancelled", 1, 0)


@pytest.mark.parametrize(("job_id", "index"), [("no-such-job", 0), (None, 1), (None, -1)])
def test_a_missing_job_or_request_is_skipped_and_let_go(
    world_of: Callable[..., World], job_id: str | None, index: int
) -> None:
    world = world_of(httpx.Response(204))
    job_id = job_id or world.notifier.notify_user(USER, user_body())

    assert isinstance(world.deliver(job_id, index), Skipped)
    assert world.graph.requests == []
    assert world.where(job_id, index) == set()


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
