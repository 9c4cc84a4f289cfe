"""The default `teams-notify bench`: delivery throughput of a local fleet against the simulator, end to end.

Starts a private redis-server, the simulator and N `teams-notify worker` processes; enqueues one bulk job;
times it from enqueue to the last request recorded; and checks every recipient was delivered exactly
once. The figures in the README come from this command.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from worker.bench.fleet import Fleet, bulk, users
from worker.simulator import Simulator


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
    fleet = Fleet(
        workdir / "throughput", workers=workers, concurrency=concurrency, rate_limits=rate_limits, latency_ms=latency_ms
    )
    with fleet:
        addressed = users(recipients)
        notifier = fleet.producer
        started = time.monotonic()
        job_id = notifier.notify_recipients(bulk(addressed))
        enqueued = time.monotonic() - started
        status = notifier.status(job_id)
        while not status["state"].startswith("completed") and time.monotonic() - started < timeout:
            time.sleep(0.05)
            status = notifier.status(job_id)
        took = time.monotonic() - started
        return _figures(fleet.sim, status, addressed, took, enqueued) | {
            "workers": workers,
            "concurrency": concurrency,
            "latency_ms": latency_ms,
            "rate_limits": rate_limits,
        }


def _figures(sim: Simulator, status: dict[str, Any], users: list[str], took: float, enqueued: float) -> dict[str, Any]:
    stats: dict[str, Any] = sim.stats()
    accepted = sim.recorded_requests()
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
