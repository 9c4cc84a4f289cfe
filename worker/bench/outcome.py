"""What every scenario on a fleet reports: its jobs' end, Graph's answers, throughput against the limit,
enqueue-to-Graph latency, lost and duplicated deliveries, and what the worker processes cost."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from worker.bench import figures
from worker.bench.fleet import Fleet
from worker.simulator.config import GRAPH_RATE_LIMITS

Say = Callable[[str], None]
Run = Callable[[Path, float, Say], dict[str, Any]]
#: A job's creation time (epoch seconds) by `figures.job_key`.
Created = Mapping[tuple[str, str], float]

#: Graph's published bulk limits, in requests a second.
BULK_TENANT = GRAPH_RATE_LIMITS["bulk_tenant"]
BULK_APP = GRAPH_RATE_LIMITS["bulk_app"]
#: Recipients in one bulk request.
PER_REQUEST = 100
#: The issue's target for 429s, as a percentage of Graph's answers.
THROTTLED_TARGET = 1.0
#: Seconds to wait after the jobs end before reading what Graph accepted, so a late duplicate is counted.
SETTLE_SECONDS = 2.0


def settled(fleet: Fleet, ended_at: float | None) -> list[dict[str, Any]]:
    """What Graph accepted, read a moment after the jobs ended (at once after a timeout)."""
    if ended_at is not None:
        time.sleep(max(0.0, ended_at + SETTLE_SECONDS - time.time()))
    return fleet.sim.recorded_requests()


def expected(kind: str, tenant: str, addressed: Iterable[str]) -> list[figures.Delivery]:
    """The deliveries a job of `kind` for `tenant` addressing `addressed` should make."""
    return [(kind, tenant.lower(), user.lower()) for user in addressed]


def losses(records: list[dict[str, Any]], wanted: list[figures.Delivery]) -> dict[str, int]:
    """Lost and duplicated deliveries."""
    lost, duplicated = figures.lost_and_duplicated(wanted, figures.deliveries(records))
    return {"lost": lost, "duplicated": duplicated}


def throughput(
    records: list[dict[str, Any]], started: float, limit: float | None, endpoint: str | None = None
) -> dict[str, Any]:
    """Requests a second as Graph received them (first to last), recipients a second, % of the limit, and
    requests in each second from the enqueue (the chart's series); of one endpoint's requests if named."""
    chosen = [r for r in records if endpoint is None or r["endpoint"] == endpoint]
    times = sorted(figures.epoch(r["received_at"]) for r in chosen)
    rate = figures.arrival_rate(times)
    per_request = sum(int(r["recipients"]) or 1 for r in chosen) / len(chosen) if chosen else 0.0
    last = times[-1] - started if times else None
    return {
        "rate_of": endpoint or "all",
        "requests_per_s": None if rate is None else round(rate, 1),
        "recipients_per_s": None if rate is None else round(rate * per_request, 1),
        "requests_per_s_from_enqueue": round(len(times) / last, 1) if last else None,
        "limit_requests_per_s": limit,
        "pct_of_limit": figures.pct_of_limit(rate, limit),
        "first_request_after_s": None if not times else round(times[0] - started, 3),
        "throughput_per_s": figures.per_second(times, started),
    }


def latency(records: list[dict[str, Any]], created: Created) -> dict[str, Any]:
    """p50 and p99 from each job's creation to Graph receiving each of its requests."""
    summary = figures.latency_summary(figures.enqueue_latencies(records, created))
    return {"enqueue_to_graph_p50_s": summary["p50"], "enqueue_to_graph_p99_s": summary["p99"]}


def outcome(
    fleet: Fleet,
    records: list[dict[str, Any]],
    statuses: dict[str, dict[str, Any]],
    ended_at: float | None,
    started: float,
    timeout: float,
    *,
    created: Created,
    limit: float | None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """What every fleet scenario reports (call `fleet.usage()` as the jobs end, so idle time is not counted)."""
    stats: dict[str, Any] = fleet.sim.stats()
    states = Counter(str(status["state"]) for status in statuses.values())
    completed = ended_at is not None and set(states) == {"completed"}
    answers = figures.throttled(stats["responses"])
    return {
        "completed": completed,
        "error": None if ended_at is not None else f"jobs not ended after {timeout:g}s",
        "job_states": dict(states),
        "seconds": None if ended_at is None else round(ended_at - started, 3),
        "accepted_requests": len(records),
        "responses": stats["responses"],
        **answers,
        **throughput(records, started, limit, endpoint),
        **latency(records, created),
        **fleet.usage().figures(int(answers["responses_total"] or 0)),  # every request Graph answered
        "logs": str(fleet.workdir),
    }
