"""The world of the delivery tests: real job records and lanes on a private Redis, Graph behind MockTransport.

`World` plays the scheduler's part (`World.hand`: the request made ready and handed out), then runs the send task's
`Delivery.deliver` as a worker would; `world_of` is the fixture that builds worlds and closes them. A test module
uses the fixture by importing it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from producers import Notifier, keys
from tests.unit.notification_examples import TENANT
from worker.auth import AccessToken
from worker.deadletters import DeadLetterStore
from worker.delivery import Delivery, Result
from worker.graph import GraphClient
from worker.heartbeat import Heartbeat
from worker.jobs import Job, JobStore
from worker.lanes import Claim, LaneStore
from worker.ratelimit import Permit

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
