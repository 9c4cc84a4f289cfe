"""Tokens for a fleet: one per tenant in Redis, one refresh at a time, refreshed ahead, errors typed and logged once.

These tests put a fake Entra (`FakeEntra`) behind real Redis; `test_entra.py` runs the real MSAL against the
simulator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from prometheus_client import REGISTRY

from worker.auth import AccessToken, TokenProvider
from worker.config import load
from worker.errors import AuthError, CredentialsRefused, EntraUnavailable, TokenLifetimeTooShort

TENANT = "7155e3c8-175e-4311-97ef-572edc3aa3db"
OTHER = "0d5e1a7f-3c40-4a6b-9a1b-5d8f2f0e1c11"
CLIENT = "a3111f15-658e-457c-9689-fd20fe907330"
SECRET = "Zx8Q~unit-test-secret-not-real"
#: What a bulk send asks for (worker.delivery): 45 minutes and 2 more, else a fresh one with 45 minutes and 10 s.
BULK = 45 * 60 + 120
BULK_REQUIRED = 45 * 60 + 10


class FakeEntra:
    """Issues numbered tokens of a chosen lifetime, or raises; can be held until released, like a slow Entra."""

    def __init__(self, lifetime: float = 3599, error: AuthError | None = None, delay: float = 0.0) -> None:
        self.lifetime = lifetime
        self.error = error
        self.delay = delay
        self.calls: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fetch(self, tenant: str) -> tuple[str, float]:
        with self._lock:
            self.calls.append(tenant)
            number = len(self.calls)
        gate = self.gates.get(tenant)
        if gate is not None:
            gate.wait(30)
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return f"token-{tenant[:4]}-{number}", self.lifetime


@pytest.fixture
def entra() -> FakeEntra:
    return FakeEntra()


@pytest.fixture
def make(redis_url: str, entra: FakeEntra) -> Iterator[Callable[..., TokenProvider]]:
    """Makes workers' token providers sharing one Redis and one fake Entra."""
    made: list[TokenProvider] = []

    def provider(secret: str = SECRET, fetcher: FakeEntra | None = None, **kwargs: object) -> TokenProvider:
        settings = load(
            {
                "TEAMS_NOTIFY_CLIENT_ID": CLIENT,
                "TEAMS_NOTIFY_CLIENT_SECRET": secret,
                "TEAMS_NOTIFY_REDIS_URL": redis_url,
            }
        )
        made.append(TokenProvider(settings, fetcher=fetcher or entra, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield provider
    for provider_ in made:
        provider_.close()


def test_a_token_is_fetched_once_then_served_from_memory(make: Callable[..., TokenProvider], entra: FakeEntra) -> None:
    tokens = make()

    first = tokens.token(TENANT)
    second = tokens.token(TENANT, BULK, required=BULK_REQUIRED)

    assert first.value == second.value
    assert entra.calls == [TENANT]
    assert 3500 < first.lifetime <= 3599


def test_another_worker_takes_the_token_from_redis_without_asking_entra(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    first = make().token(TENANT)

    assert make().token(TENANT).value == first.value
    assert entra.calls == [TENANT]


def test_four_workers_of_eight_threads_ask_entra_once_per_tenant(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    entra.delay = 0.3  # long enough for every thread to arrive while the first request is out
    workers = [make() for _ in range(4)]
    asks = [(worker, tenant) for worker in workers for tenant in (TENANT, OTHER) for _ in range(4)]

    with ThreadPoolExecutor(len(asks)) as pool:
        got = list(pool.map(lambda ask: ask[0].token(ask[1], BULK, required=BULK_REQUIRED), asks))

    assert sorted(entra.calls) == [OTHER, TENANT]
    assert len({token.value for token in got}) == 2


def test_a_token_too_short_for_a_bulk_send_is_replaced_once_for_every_thread(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    now = [time.time() - 1000]
    tokens = make(clock=lambda: now[0])
    short = tokens.token(TENANT)
    now[0] += 1000  # 43 minutes left: fine for a send to one user, too little for a bulk send
    entra.delay = 0.2

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: tokens.token(TENANT, BULK, required=BULK_REQUIRED), range(8)))

    assert len(entra.calls) == 2
    assert {token.value for token in got} == {"token-7155-2"} != {short.value}


def test_a_token_near_the_end_of_its_use_is_refreshed_in_the_background(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    now = [time.time()]
    entra.lifetime = BULK + 15  # usable for a bulk send for 15 s
    tokens = make(clock=lambda: now[0])
    first = tokens.token(TENANT, BULK, required=BULK_REQUIRED)

    now[0] += 5
    assert tokens.token(TENANT, BULK, required=BULK_REQUIRED) == first  # 10 s of use left: no refresh yet
    now[0] += 8  # 2 s of use left, under a fifth of its 15: refreshed ahead, the send does not wait
    assert tokens.token(TENANT, BULK, required=BULK_REQUIRED) == first
    _wait_for(lambda: len(entra.calls) == 2)
    now[0] += 3  # the first token is no use for bulk any more; the second one is there already
    assert tokens.token(TENANT, BULK, required=BULK_REQUIRED).value == "token-7155-2"
    assert len(entra.calls) == 2


def test_invalidate_drops_a_refused_token_for_the_whole_fleet(
    make: Callable[..., TokenProvider], entra: FakeEntra, store: redis.Redis
) -> None:
    worker = make()
    refused = worker.token(TENANT)

    worker.invalidate(TENANT)
    worker.invalidate(OTHER)  # nothing was handed out for that tenant: nothing happens

    assert store.keys("teams-notify:token:*") == []
    renewed = make().token(TENANT)
    assert renewed.value != refused.value
    assert worker.token(TENANT).value == renewed.value
    assert len(entra.calls) == 2


def test_invalidating_an_old_token_keeps_the_one_another_thread_just_fetched(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    tokens = make()
    old = tokens.token(TENANT)
    entra.lifetime = 3599
    holder: dict[str, AccessToken] = {}

    def other_thread() -> None:  # it got the old token too, then Graph refused it and it fetched a new one
        holder["got"] = tokens.token(TENANT)
        tokens.invalidate(TENANT)
        holder["new"] = tokens.token(TENANT)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    tokens.invalidate(TENANT)  # this thread's (old) token: already replaced, so the new one stays

    assert holder["got"].value == old.value != holder["new"].value
    assert tokens.token(TENANT).value == holder["new"].value
    assert len(entra.calls) == 2


def test_a_tenant_whose_tokens_live_under_45_minutes_gets_a_permanent_error_and_one_request(
    make: Callable[..., TokenProvider], entra: FakeEntra, caplog: pytest.LogCaptureFixture
) -> None:
    entra.lifetime = 30 * 60
    tokens = make()

    for _ in range(3):
        with pytest.raises(TokenLifetimeTooShort) as raised:
            tokens.token(TENANT, BULK, required=BULK_REQUIRED)
        assert raised.value.transient is False
        assert raised.value.reason == "token_lifetime_too_short"
    with pytest.raises(TokenLifetimeTooShort):
        make().token(TENANT, BULK, required=BULK_REQUIRED)  # another worker knows it from the shared token

    assert "tokens of 30 minutes" in str(raised.value)
    assert tokens.token(TENANT).value == "token-7155-1"  # sends to one user or chat need no 45 minutes
    assert entra.calls == [TENANT]
    assert len([r for r in caplog.records if "tokens of 30 minutes" in r.getMessage()]) == 2  # once per worker


def test_refused_credentials_wait_without_asking_entra_for_every_send_and_are_logged_once(
    make: Callable[..., TokenProvider], entra: FakeEntra, caplog: pytest.LogCaptureFixture
) -> None:
    entra.error = CredentialsRefused("Entra refuses the client secret: AADSTS7000215: Invalid client secret provided")
    workers = [make(), make()]

    for _ in range(10):
        for worker in workers:
            with pytest.raises(CredentialsRefused) as raised:
                worker.token(TENANT, BULK, required=BULK_REQUIRED)
            assert raised.value.transient is True

    assert entra.calls == [TENANT]  # the fleet waits REFUSAL_WAIT before asking again
    lines = [r for r in caplog.records if r.name == "worker.auth" and "AADSTS7000215" in r.getMessage()]
    assert len(lines) == 2  # one per worker, not one per send
    assert all(r.levelno == logging.ERROR and "nothing is dead-lettered" in r.getMessage() for r in lines)
    assert SECRET not in caplog.text


def test_after_a_refusal_entra_is_asked_again_with_a_growing_wait(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    now = [time.time()]
    entra.error = EntraUnavailable("Entra answered 503")
    tokens = make(clock=lambda: now[0])
    waits = []
    for _ in range(4):
        with pytest.raises(EntraUnavailable):
            tokens.token(TENANT)
        calls = len(entra.calls)
        waited = 0.0
        while len(entra.calls) == calls:
            now[0] += 0.5
            waited += 0.5
            with pytest.raises(EntraUnavailable):
                tokens.token(TENANT)
        waits.append(waited)

    assert waits == [2.0, 4.0, 8.0, 16.0]
    entra.error = None
    now[0] += 60
    assert tokens.token(TENANT).value.startswith("token-")


def test_a_hung_entra_for_one_tenant_holds_neither_other_sends_to_it_nor_another_tenant(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    entra.gates[TENANT] = threading.Event()
    worker, other_worker = make(follow_wait=0.5), make(follow_wait=0.5)
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(worker.token, TENANT)
        _wait_for(lambda: entra.calls == [TENANT])

        started = time.monotonic()
        for provider in (worker, other_worker):  # another thread of the same worker, or another worker
            with pytest.raises(EntraUnavailable) as raised:
                provider.token(TENANT)
            assert raised.value.transient is True
        assert time.monotonic() - started < 2.5
        other = other_worker.token(OTHER)
        assert time.monotonic() - started < 2.5

        entra.gates[TENANT].set()
        assert leader.result(10).value.startswith("token-")
    assert other.value.startswith("token-")


def test_a_provider_never_shows_its_secret_or_tokens(make: Callable[..., TokenProvider]) -> None:
    tokens = make()
    token = tokens.token(TENANT)

    text = repr(tokens) + repr(token) + str(token)
    assert SECRET not in text
    assert token.value not in text
    assert "client secret" in repr(tokens)


def test_without_redis_each_worker_still_gets_tokens(entra: FakeEntra) -> None:
    settings = load(
        {
            "TEAMS_NOTIFY_CLIENT_ID": CLIENT,
            "TEAMS_NOTIFY_CLIENT_SECRET": SECRET,
            "TEAMS_NOTIFY_REDIS_URL": "redis://127.0.0.1:9/0",
        }
    )
    tokens = TokenProvider(settings, fetcher=entra)

    assert tokens.token(TENANT).value == tokens.token(TENANT).value
    assert entra.calls == [TENANT]
    tokens.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_token_requests_cache_hits_and_refresh_waits_are_counted(
    make: Callable[..., TokenProvider], entra: FakeEntra
) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "issued": sample("teams_notify_token_requests_total", tenant=OTHER, outcome="issued"),
        "refused": sample("teams_notify_token_requests_total", tenant=OTHER, outcome="credentials_refused"),
        "memory": sample("teams_notify_tokens_served_total", source="memory"),
        "redis": sample("teams_notify_tokens_served_total", source="redis"),
        "waits": sample("teams_notify_token_refresh_wait_seconds_count"),
    }
    make().token(OTHER)
    make().token(OTHER)
    worker = make()
    worker.token(OTHER)
    worker.token(OTHER)
    entra.error = CredentialsRefused("AADSTS7000215: Invalid client secret provided")
    with pytest.raises(CredentialsRefused):
        make(secret="another secret").token(OTHER)

    assert sample("teams_notify_token_requests_total", tenant=OTHER, outcome="issued") == before["issued"] + 1
    refused = sample("teams_notify_token_requests_total", tenant=OTHER, outcome="credentials_refused")
    assert refused == before["refused"] + 1
    assert sample("teams_notify_tokens_served_total", source="redis") == before["redis"] + 2
    assert sample("teams_notify_tokens_served_total", source="memory") == before["memory"] + 1
    assert sample("teams_notify_token_refresh_wait_seconds_count") == before["waits"] + 1
