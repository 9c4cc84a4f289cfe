"""`teams-notify bench --scenario raw`: the fleet's raw capacity, no pacing, the simulator answering at once.

2 workers x 8 threads deliver one bulk job as fast as they can; the issue's targets are at least 350
requests a second, at most 2.5 ms of worker CPU per Graph request and at most 150 MB of peak RSS per
worker process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from worker.bench.fleet import Fleet, bulk, users
from worker.bench.outcome import PER_REQUEST, Say, expected, losses, outcome, settled
from worker.demo import DEMO_TENANT

#: Recipients of the job: 5,000 requests, several seconds of sending (a steady rate, not a start-up burst).
RAW_RECIPIENTS = 500_000
WORKERS, CONCURRENCY = 2, 8
#: The issue's targets.
REQUESTS_PER_S_TARGET = 350.0
CPU_MS_PER_REQUEST_TARGET = 2.5
PEAK_RSS_MB_TARGET = 150.0


def raw(workdir: Path, timeout: float, say: Say) -> dict[str, Any]:
    """One bulk job with pacing off: requests a second, CPU per request, peak RSS."""
    with Fleet(workdir, workers=WORKERS, concurrency=CONCURRENCY, rate_limits="off") as fleet:
        deadline = time.monotonic() + timeout
        addressed = users(RAW_RECIPIENTS)
        started = time.time()
        job_id = fleet.producer.notify_recipients(bulk(addressed))
        say(f"raw: bulk job of {RAW_RECIPIENTS // PER_REQUEST} requests enqueued, pacing off")
        statuses, ended_at = fleet.wait_jobs([job_id], deadline)
        fleet.usage()
        created = {("bulk", DEMO_TENANT.lower()): fleet.created_at(job_id)}
        records = settled(fleet, ended_at)
        result = outcome(fleet, records, statuses, ended_at, started, timeout, created=created, limit=None)
    return (
        result
        | losses(records, expected("bulk", DEMO_TENANT, addressed))
        | {
            "setup": {"workers": WORKERS, "concurrency": CONCURRENCY, "recipients": RAW_RECIPIENTS},
            "targets": targets(result),
        }
    )


def targets(result: dict[str, Any]) -> dict[str, bool]:
    """The raw-capacity targets met or not (a figure that is missing misses its target)."""
    rate, cpu, rss = result["requests_per_s"], result["worker_cpu_ms_per_request"], result["worker_peak_rss_mb"]
    return {
        "requests_per_s_at_least_350": rate is not None and rate >= REQUESTS_PER_S_TARGET,
        "cpu_ms_per_request_at_most_2_5": cpu is not None and cpu <= CPU_MS_PER_REQUEST_TARGET,
        "peak_rss_at_most_150mb": rss is not None and rss <= PEAK_RSS_MB_TARGET,
    }
