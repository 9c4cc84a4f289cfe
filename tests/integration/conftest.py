"""Real processes: a private redis-server, the simulator over HTTPS, `teams-notify worker` children."""

from __future__ import annotations

import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from producers import Notifier
from producers.status import ENDED_STATES
from worker import sandbox
from worker.simulator import Simulator, SimulatorConfig

TENANT = "7155e3c8-175e-4311-97ef-572edc3aa3db"
CLIENT_ID = "a3111f15-658e-457c-9689-fd20fe907330"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.RedisServer]:
    server = sandbox.RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: sandbox.RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    sim = Simulator(SimulatorConfig(port=0, state_dir=tmp_path_factory.mktemp("simulator"), rate_limits="off"))
    sim.start()
    yield sim
    sim.stop()


class SimulatorControl:
    """The simulator's control API, as the tests use it."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.client = httpx.Client(
            base_url=sim.authority_host + "/_simulator", verify=ssl.create_default_context(cafile=str(sim.ca_path))
        )

    def reset(self) -> None:
        self.client.post("/reset").raise_for_status()

    def configure(self, **changes: Any) -> None:
        self.client.patch("/config", json=changes).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(self.client.get("/requests").json())

    def delivered(self) -> Counter[str]:
        """How often each user was addressed by the bulk requests the simulator accepted."""
        return Counter(r["userId"] for request in self.requests() for r in request["body"].get("recipients", []))

    def stats(self) -> dict[str, Any]:
        return dict(self.client.get("/stats").json())


@pytest.fixture
def graph(simulator: Simulator) -> Iterator[SimulatorControl]:
    control = SimulatorControl(simulator)
    control.reset()
    control.configure(rate_limits="off", error_rate=0.0, drop_rate=0.0, latency_ms=0, conflict_user_ids=[])
    yield control
    control.client.close()


@pytest.fixture
def worker_env(redis_url: str, simulator: Simulator) -> dict[str, str]:
    return sandbox.simulator_env(
        simulator,
        redis_url,
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret="integration-secret",
        metrics_port="0",
        rate_limits="off",
    )


@pytest.fixture
def start_workers(
    worker_env: dict[str, str], redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., list[sandbox.WorkerProcess]]]:
    started: list[sandbox.WorkerProcess] = []

    def start(count: int = 1, *args: str) -> list[sandbox.WorkerProcess]:
        workers = [
            sandbox.WorkerProcess(worker_env, f"w{len(started) + i}", tmp_path / f"w{len(started) + i}.log", list(args))
            for i in range(count)
        ]
        for w in workers:
            w.start()
        started.extend(workers)
        sandbox.wait_ready(redis_url, [w.node for w in workers])
        return workers

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def notifier(redis_url: str) -> Iterator[Notifier]:
    n = Notifier(redis_url)
    yield n
    n.close()


def wait_until_ended(notifier: Notifier, job_ids: list[str], timeout: float = 120) -> list[dict[str, Any]]:
    """Polls until every job has ended: completed, with errors, or cancelled (or fails with the last statuses).

    Through a failover too: the notifier rides it out."""
    deadline = time.monotonic() + timeout
    statuses: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        statuses = [notifier.status(j) for j in job_ids]
        if all(s["state"] in ENDED_STATES for s in statuses):
            return statuses
        time.sleep(0.1)
    pytest.fail(f"jobs did not end within {timeout}s: {statuses}")
