"""Fixtures for the simulator's tests: one HTTPS simulator per session, reset before each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from worker.simulator import Simulator, SimulatorConfig

from .helpers import QUIET, Graph, fetch_token


@pytest.fixture(scope="session")
def shared_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """The simulator every test shares (starting one per test would cost a certificate each time)."""
    config = SimulatorConfig(port=0, state_dir=tmp_path_factory.mktemp("simulator"), rate_limits="off")
    with Simulator(config) as simulator:
        yield simulator


@pytest.fixture
def sim(shared_simulator: Simulator) -> Simulator:
    """The shared simulator, with records, counters, throttling and knobs reset."""
    shared_simulator.reconfigure(**QUIET)
    shared_simulator.reset()
    return shared_simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    """An HTTPS client that trusts only the simulator's CA."""
    with httpx.Client(base_url=sim.authority_host, verify=sim.ssl_context(), timeout=10) as http:
        yield http


@pytest.fixture
def graph(client: httpx.Client) -> Graph:
    """A Graph caller with a fresh token for the default tenant and app."""
    return Graph(client, fetch_token(client))


@pytest.fixture
def stats(client: httpx.Client) -> Callable[[], dict[str, Any]]:
    """Reads `/_simulator/stats`."""

    def read() -> dict[str, Any]:
        result: dict[str, Any] = client.get("/_simulator/stats").json()
        return result

    return read
