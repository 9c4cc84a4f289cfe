"""What every benchmark run starts: a private redis-server, the simulator and `teams-notify worker`s."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from producers import Notifier, keys
from producers.errors import TeamsNotifyError
from worker import sandbox
from worker.bench.process import ProcessSampler, Usage
from worker.demo import DEMO_CLIENT_ID, DEMO_TENANT
from worker.simulator import Simulator, SimulatorConfig

#: Job states after which nothing more happens.
ENDED = frozenset({"completed", "completed_with_errors", "cancelled"})
#: The topic every benchmark notification points at.
TOPIC = {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/bench"}


def notification(**extra: Any) -> dict[str, Any]:
    """A Graph body for any of the four sends (add `recipients` for a bulk one)."""
    return {
        "topic": TOPIC,
        "activityType": "pendingFinanceApprovalRequests",
        "previewText": {"content": "Internal spending team has a pending finance approval requests"},
        **extra,
    }


def bulk(users: list[str]) -> dict[str, Any]:
    """A bulk body addressing `users`."""
    return notification(
        recipients=[{"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": u} for u in users]
    )


def users(count: int, series: int = 0) -> list[str]:
    """Distinct, stable user ids (series 0: the demo's); another `series` shares none with the others."""
    return [str(uuid.UUID(int=0x1000_0000_0000_4000_8000_0000_0000_0000 + (series << 80) + i)) for i in range(count)]


def tenants(count: int) -> list[str]:
    """Distinct, stable tenant GUIDs."""
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://teams-notify.bench/tenant/{i}")) for i in range(count)]


class Fleet:
    """A private Redis (durable on demand), the simulator and N workers, stopped together at the end."""

    def __init__(
        self,
        workdir: Path,
        *,
        workers: int,
        concurrency: int,
        rate_limits: str,
        latency_ms: float = 0,
        durable: bool = False,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "redis").mkdir(exist_ok=True)
        self.workdir = workdir
        self.rate_limits = rate_limits
        self.redis = sandbox.RedisServer(workdir / "redis", durable=durable)
        self.sim = Simulator(
            SimulatorConfig(
                port=0, state_dir=workdir.parent / "simulator", rate_limits=rate_limits, latency_ms=latency_ms
            )
        )
        self._counts = (workers, concurrency)
        self.workers: list[sandbox.WorkerProcess] = []
        self.notifier: Notifier | None = None
        self.sampler: ProcessSampler | None = None

    def start(self) -> Fleet:
        """Starts Redis, the simulator and the workers; returns once every worker answers a ping."""
        self.redis.start()
        self.sim.start()
        env = sandbox.simulator_env(
            self.sim,
            self.redis.url,
            tenant_id=DEMO_TENANT,
            client_id=DEMO_CLIENT_ID,
            client_secret="bench-secret",
            rate_limits=self.rate_limits,
            metrics_port="0",
            log_level="WARNING",
        )
        count, concurrency = self._counts
        self.workers = [
            sandbox.WorkerProcess(env, f"bench{i}", self.workdir / f"worker{i}.log", ["-c", str(concurrency)])
            for i in range(count)
        ]
        for worker in self.workers:
            worker.start()
        sandbox.wait_ready(self.redis.url, [w.node for w in self.workers])
        self.sampler = ProcessSampler({w.node: w.pid for w in self.workers if w.pid is not None}).start()
        self.notifier = Notifier(self.redis.url)
        return self

    def usage(self) -> Usage:
        """Stops sampling the workers (CPU and RSS since they answered a ping) and returns what it saw."""
        return self.sampler.stop() if self.sampler is not None else Usage()

    def created_at(self, job_id: str) -> float:
        """Epoch seconds of the job's creation, as its producer recorded it."""
        client = redis.Redis.from_url(self.redis.url)
        try:
            value = client.hget(keys.job(job_id), "created_at")
        finally:
            client.close()
        if value is None:
            raise RuntimeError(f"job {job_id} has no created_at")
        text = value.decode() if isinstance(value, bytes) else str(value)
        return datetime.fromisoformat(text).timestamp()

    def stop(self) -> None:
        """Stops whatever runs (workers first), never raising."""
        if self.notifier is not None:
            self.notifier.close()
        self.usage()
        for worker in self.workers:
            worker.stop()
        self.sim.stop()
        self.redis.stop()

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def producer(self) -> Notifier:
        """The producer the run enqueues with."""
        if self.notifier is None:
            raise RuntimeError("the fleet is not started")
        return self.notifier

    def accepted(self) -> int:
        """Requests the simulator has accepted so far."""
        stats: dict[str, Any] = self.sim.stats()
        return int(stats["accepted_requests"])

    def wait_jobs(
        self, job_ids: list[str], deadline: float, tick: Callable[[], None] | None = None
    ) -> tuple[dict[str, dict[str, Any]], float | None]:
        """Polls until every job has ended or the monotonic deadline passes; returns the last statuses seen
        and the wall-clock time all had ended (None on timeout). Redis being away is waited out."""
        statuses: dict[str, dict[str, Any]] = {}
        while True:
            if tick is not None:
                tick()
            for job_id in job_ids:
                if not _ended(statuses.get(job_id)):
                    try:
                        statuses[job_id] = self.producer.status(job_id)
                    except TeamsNotifyError:  # Redis restarting: ask again on the next round
                        continue
            if all(_ended(statuses.get(job_id)) for job_id in job_ids):
                return statuses, time.time()
            if time.monotonic() >= deadline:
                return statuses, None
            time.sleep(0.05)


def _ended(status: dict[str, Any] | None) -> bool:
    return status is not None and status["state"] in ENDED
