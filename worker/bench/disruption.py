"""The crash scenarios: a worker `kill -9`ed (`kill-worker`) or Redis killed and restarted (`restart-redis`)
a quarter into a job at Graph's limits, and how long the job then takes beyond what pacing needs."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from worker.bench import figures
from worker.bench.fleet import Fleet, bulk, users
from worker.bench.outcome import BULK_TENANT, PER_REQUEST, Run, Say, expected, losses, outcome, settled
from worker.demo import DEMO_TENANT

#: How far into a job the crash scenarios strike, as a fraction of its requests accepted by Graph.
DISRUPT_AT = 0.25
#: Seconds Redis stays down in `restart-redis`.
REDIS_DOWN_SECONDS = 5.0


def disruption_scenario(kind: str) -> Run:
    """A 10,000-recipient job at Graph's limits, struck at 25% (a worker `kill -9`ed, or Redis killed and
    restarted after 5 s): seconds until the job ends beyond what pacing alone needs for the rest."""
    recipients = 10_000
    total = recipients // PER_REQUEST

    def run(workdir: Path, timeout: float, say: Say) -> dict[str, Any]:
        durable = kind == "restart-redis"
        with Fleet(workdir, workers=2, concurrency=8, rate_limits="graph", durable=durable) as fleet:
            deadline = time.monotonic() + timeout
            addressed = users(recipients)
            started = time.time()
            job_ids = [fleet.producer.notify_recipients(bulk(addressed))]
            created = {("bulk", DEMO_TENANT.lower()): fleet.created_at(job_ids[0])}
            while fleet.accepted() < total * DISRUPT_AT and time.monotonic() < deadline:
                time.sleep(0.02)
            struck = fleet.accepted()
            event: dict[str, Any] = {"disrupted_at_request": struck}
            if kind == "kill-worker":
                victim = fleet.workers[0]
                victim.signal(signal.SIGKILL)
                back_at = time.time()
                say(f"kill-worker: kill -9 of {victim.node} (pid {victim.pid}) after {struck} of {total} requests")
            else:
                fleet.redis.kill()
                say(f"restart-redis: Redis killed after {struck} of {total} requests; back in {REDIS_DOWN_SECONDS:g}s")
                time.sleep(REDIS_DOWN_SECONDS)
                fleet.redis.restart()
                back_at = time.time()
                event["accepted_while_down"] = fleet.accepted() - struck
            remaining = max(0, total - fleet.accepted())
            statuses, ended_at = fleet.wait_jobs(job_ids, deadline)
            fleet.usage()
            event["workers_alive"] = sum(w.running() for w in fleet.workers)
            records = settled(fleet, ended_at)
            result = outcome(fleet, records, statuses, ended_at, started, timeout, created=created, limit=BULK_TENANT)
        paced = figures.paced_seconds(remaining, BULK_TENANT)
        after = None if ended_at is None else ended_at - back_at
        recovery = None if ended_at is None else figures.recovery_seconds(back_at, ended_at, remaining, BULK_TENANT)
        return (
            result
            | losses(records, expected("bulk", DEMO_TENANT, addressed))
            | event
            | {
                "setup": {"workers": 2, "concurrency": 8, "recipients": recipients, "durable_redis": durable},
                "remaining_requests": remaining,
                "paced_min_s": round(paced, 3),
                "ended_after_event_s": None if after is None else round(after, 3),
                "recovery_s": None if recovery is None else round(recovery, 3),
            }
        )

    return run
