"""Fixtures of the unit tests: a private redis-server per module, so no test depends on one the machine runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from producers import Notifier
from worker.sandbox import RedisServer


@pytest.fixture(autouse=True)
def _no_settings_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see no TEAMS_NOTIFY_* variable of the shell or CI they run in; a test sets its own."""
    for name in [name for name in os.environ if name.startswith("TEAMS_NOTIFY_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server on a free port, stopped when the module's tests are done."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private server's URL, its data wiped before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the private server that reads strings, as the worker's stores do."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def notifier(redis_url: str) -> Iterator[Notifier]:
    """A Notifier on the private server."""
    instance = Notifier(redis_url)
    yield instance
    instance.close()
