"""`teams-notify bench`: delivery throughput of a local fleet against the simulator, measured end to end.

Starts a private redis-server, the simulator and N `teams-notify worker` processes; enqueues one bulk job;
times it from enqueue to the last request recorded; and checks every recipient was delivered exactly
once. The figures in the README come from this command.
"""

from __future__ import annotations

import ssl
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from producers import Notifier
from worker import sandbox
from worker.demo import DEMO_CLIENT_ID, DEMO_TENANT, demo_users
from worker.simulator import Simulator, SimulatorConfig


def _bulk(users: list[str]) -> dict[str, Any]:
    return {
        "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/bench"},
        "activityType": "pendingFinanceApprovalRequests",
        "previewText": {"content": "Internal spending team has a pending finance approval requests"},
        "recipients": [{"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": u} for u in users],
    }


def run_bench(
    recipients: int = 10_000,
    workers: int = 2,
    concurrency: int = 8,
    latency_ms: float = 0,
    rate_limits: str = "off",
    timeout: float = 600,
) -> dict[str, Any]:
    """Runs one measurement and returns its figures (JSON-ready)."""
    workdir = Path(tempfile.mkdtemp(prefix="teams-notify-bench-"))
    (workdir / "redis").mkdir()
    redis_server = sandbox.RedisServer(workdir / "redis").start()
    config = SimulatorConfig(port=0, state_dir=workdir / "simulator", rate_limits=rate_limits, latency_ms=latency_ms)
    sim = Simulator(config).start()
    env = sandbox.simulator_env(
        sim,
        redis_server.url,
        tenant_id=DEMO_TENANT,
        client_id=DEMO_CLIENT_ID,
        client_secret="bench-secret",
        rate_limits=rate_limits,
        metrics_port="0",
        log_level="WARNING",
    )
    fleet = [
        sandbox.WorkerProcess(env, f"bench{i}", workdir / f"worker{i}.log", ["-c", str(concurrency)])
        for i in range(workers)
    ]
    try:
        for worker in fleet:
            worker.start()
        sandbox.wait_ready(redis_server.url, [w.node for w in fleet])
        users = demo_users(recipients)
        notifier = Notifier(redis_server.url)
        started = time.monotonic()
        job_id = notifier.notify_recipients(_bulk(users))
        enqueued = time.monotonic() - started
        status = notifier.status(job_id)
        while not status["state"].startswith("completed") and time.monotonic() - started < timeout:
            time.sleep(0.05)
            status = notifier.status(job_id)
        took = time.monotonic() - started
        notifier.close()
        return _figures(sim, status, users, took, enqueued) | {
            "workers": workers,
            "concurrency": concurrency,
            "latency_ms": latency_ms,
            "rate_limits": rate_limits,
        }
    finally:
        for worker in fleet:
            worker.stop()
        sim.stop()
        redis_server.stop()


def _figures(sim: Simulator, status: dict[str, Any], users: list[str], took: float, enqueued: float) -> dict[str, Any]:
    verify = ssl.create_default_context(cafile=str(sim.ca_path))
    with httpx.Client(base_url=sim.authority_host + "/_simulator", verify=verify) as client:
        stats = client.get("/stats").json()
        accepted = client.get("/requests").json()
    delivered = Counter(r["userId"] for request in accepted for r in request["body"].get("recipients", []))
    requests = status["requests"]["sent"]
    return {
        "recipients": len(users),
        "state": status["state"],
        "seconds": round(took, 3),
        "enqueue_seconds": round(enqueued, 3),
        "requests_per_second": round(requests / took, 1) if took else None,
        "recipients_per_second": round(status["recipients"]["sent"] / took, 1) if took else None,
        "responses": stats["responses"],
        "throttled_429": stats["responses"].get("429", 0),
        "lost": len(set(users) - set(delivered)),
        "duplicated": sum(n - 1 for n in delivered.values() if n > 1),
        "largest_request": stats.get("max_recipients_in_request"),
    }
