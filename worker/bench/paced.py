"""The scenarios at Graph's published limits: single sends behind a bulk job (`singles`; `singles-raw` is the
same with pacing off and a slow Graph), and bulk jobs of one, two or ten tenants (`tenant1`, `tenants2`,
`tenants10`): each tenant's rate, its share, 429s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from worker.bench import figures
from worker.bench.fleet import Fleet, bulk, notification, tenants, users
from worker.bench.outcome import (
    BULK_APP,
    BULK_TENANT,
    PER_REQUEST,
    THROTTLED_TARGET,
    Run,
    Say,
    expected,
    losses,
    outcome,
    settled,
)
from worker.demo import DEMO_TENANT

#: Recipients per tenant in the tenant scenarios: about 30 s of requests at 2/s.
TENANT_RECIPIENTS = 6_000
#: The issue's targets.
SINGLE_P99_TARGET = 1.0
TENANT_LIMIT_TARGET = 95.0
SHARE_DEVIATION_TARGET = 0.10


def singles_scenario(rate_limits: str = "graph", latency_ms: float = 0, bulk_recipients: int = 6_000) -> Run:
    """Single sends during a saturating bulk job: seconds from `notify_user` to Graph, p50/p99/max. At
    Graph's limits (`singles`), or with pacing off and a slow Graph (`singles-raw`: bundles of bulk
    requests fill every slot, and a single send must still get one at once)."""
    workers, concurrency, count = 1, 4, 20
    requests = bulk_recipients // PER_REQUEST
    name = "singles" if rate_limits == "graph" else "singles-raw"
    # how long the bulk job takes: paced at the tenant's limit, or unpaced at the slots' speed
    span = (
        figures.paced_seconds(requests, BULK_TENANT)
        if rate_limits == "graph"
        else requests * latency_ms / 1000 / (workers * concurrency)
    )

    def run(workdir: Path, timeout: float, say: Say) -> dict[str, Any]:
        with Fleet(
            workdir, workers=workers, concurrency=concurrency, rate_limits=rate_limits, latency_ms=latency_ms
        ) as fleet:
            deadline = time.monotonic() + timeout
            addressed, singled = users(bulk_recipients), users(count, series=1)
            started = time.time()
            job_ids = [fleet.producer.notify_recipients(bulk(addressed))]
            say(f"{name}: bulk job of {requests} requests enqueued; {count} single sends over its middle")
            enqueued = _singles_over(fleet, singled, job_ids, started, span)
            statuses, ended_at = fleet.wait_jobs(job_ids, deadline)
            fleet.usage()
            created = {("bulk", DEMO_TENANT.lower()): fleet.created_at(job_ids[0])}
            created |= {
                ("user", user.lower()): fleet.created_at(job_id)
                for user, job_id in zip(singled, job_ids[1:], strict=True)
            }
            records = settled(fleet, ended_at)
            limit = BULK_TENANT if rate_limits == "graph" else None
            result = outcome(
                fleet, records, statuses, ended_at, started, timeout, created=created, limit=limit, endpoint="bulk"
            )
        setup: dict[str, Any] = {"workers": workers, "concurrency": concurrency, "bulk_recipients": bulk_recipients}
        setup |= {"single_sends": count, "rate_limits": rate_limits, "latency_ms": latency_ms}
        wanted = expected("bulk", DEMO_TENANT, addressed) + expected("user", DEMO_TENANT, singled)
        return result | losses(records, wanted) | _single_latencies(records, enqueued, singled) | {"setup": setup}

    return run


def _singles_over(
    fleet: Fleet, singled: list[str], job_ids: list[str], started: float, span: float
) -> dict[str, float]:
    """Sends one `notify_user` to each of `singled`, spread over the middle half of the bulk job's `span`
    seconds; when each was enqueued."""
    enqueued: dict[str, float] = {}
    for i, user in enumerate(singled):
        time.sleep(max(0.0, started + span * (0.25 + 0.5 * i / (len(singled) - 1)) - time.time()))
        enqueued[user] = time.time()
        job_ids.append(fleet.producer.notify_user(user, notification()))
    return enqueued


def _single_latencies(records: list[dict[str, Any]], enqueued: dict[str, float], singled: list[str]) -> dict[str, Any]:
    """Seconds from each single's `notify_user` to Graph's receiving it, and the target."""
    received: dict[str, float] = {}
    for record in records:
        if record["endpoint"] == "user":
            received.setdefault(str(record["target"]).lower(), figures.epoch(record["received_at"]))
    latencies = [received[user] - enqueued[user] for user in singled if user in received]
    summary = figures.latency_summary(latencies)
    return {
        "singles_delivered": len(latencies),
        "single_p50_s": summary["p50"],
        "single_p99_s": summary["p99"],
        "single_max_s": summary["max"],
        "single_latencies_s": [round(v, 3) for v in latencies],
        "targets": {"single_p99_under_1s": summary["p99"] is not None and summary["p99"] < SINGLE_P99_TARGET},
    }


def tenant_scenario(count: int, recipients: int = TENANT_RECIPIENTS) -> Run:
    """Bulk jobs for `count` tenants at once: each tenant's rate, its share of the app-wide rate, 429s."""
    name = "tenant1" if count == 1 else f"tenants{count}"

    def run(workdir: Path, timeout: float, say: Say) -> dict[str, Any]:
        with Fleet(workdir, workers=2, concurrency=8, rate_limits="graph") as fleet:
            deadline = time.monotonic() + timeout
            ids, addressed = tenants(count), users(recipients)
            body = bulk(addressed)
            started = time.time()
            job_ids = [fleet.producer.notify_recipients(body, tenant_id=tenant) for tenant in ids]
            say(f"{name}: {count} bulk job(s) of {recipients // PER_REQUEST} requests enqueued")
            statuses, ended_at = fleet.wait_jobs(job_ids, deadline)
            fleet.usage()
            created = {
                ("bulk", tenant.lower()): fleet.created_at(job_id) for tenant, job_id in zip(ids, job_ids, strict=True)
            }
            records = settled(fleet, ended_at)
            limit = min(count * BULK_TENANT, BULK_APP)
            result = outcome(fleet, records, statuses, ended_at, started, timeout, created=created, limit=limit)
        wanted = [item for tenant in ids for item in expected("bulk", tenant, addressed)]
        fairness = _fairness(records, ids, started)
        fairness["targets"]["throttled_at_most_1pct"] = result["throttled_pct"] <= THROTTLED_TARGET
        return (
            result
            | losses(records, wanted)
            | fairness
            | {"setup": {"workers": 2, "concurrency": 8, "tenants": count, "recipients_per_tenant": recipients}}
        )

    return run


def _fairness(records: list[dict[str, Any]], ids: list[str], started: float) -> dict[str, Any]:
    """Per-tenant rates over the span when every tenant was sending, and how evenly they shared."""
    limit = figures.tenant_limit(len(ids), BULK_TENANT, BULK_APP) * PER_REQUEST
    spans = figures.tenant_spans(records)
    window = figures.all_active_window(spans) if all(t in spans for t in ids) else None
    app_rate = figures.arrival_rate([figures.epoch(r["received_at"]) for r in records if r["endpoint"] == "bulk"])
    app_limit = min(len(ids) * BULK_TENANT, BULK_APP)
    overall = {
        "app_requests_per_s": None if app_rate is None else round(app_rate, 2),
        "app_pct_of_limit": None if app_rate is None else round(100 * app_rate / app_limit, 1),
        "tenant_limit_recipients_per_s": limit,
    }
    if window is None:  # some tenant ended before another began (or never sent): nothing to compare
        return overall | {
            "window_s": None,
            "per_tenant": [{"tenant": t, "span_s": _span(spans.get(t), started)} for t in ids],
            "targets": {"each_tenant_95pct_of_limit": False, "shares_within_10pct": False},
        }
    rates = figures.tenant_rates(records, ids, window)
    fractions = figures.shares(rates)
    deviation = figures.share_deviation(fractions)
    percents = {t: 100 * rate / limit for t, rate in rates.items()}
    return overall | {
        "window_s": round(window[1] - window[0], 3),
        "per_tenant": [
            {
                "tenant": t,
                "span_s": _span(spans.get(t), started),
                "recipients_per_s": round(rates[t], 1),
                "pct_of_limit": round(percents[t], 1),
                "share_pct": round(100 * fractions[t], 2),
            }
            for t in ids
        ],
        "min_pct_of_limit": round(min(percents.values()), 1),
        "max_pct_of_limit": round(max(percents.values()), 1),
        "min_share_pct": round(100 * min(fractions.values()), 2),
        "max_share_pct": round(100 * max(fractions.values()), 2),
        "share_deviation_pct": None if deviation is None else round(100 * deviation, 1),
        "targets": {
            "each_tenant_95pct_of_limit": min(percents.values()) >= TENANT_LIMIT_TARGET,
            "shares_within_10pct": deviation is not None and deviation <= SHARE_DEVIATION_TARGET,
        },
    }


def _span(span: tuple[float, float] | None, started: float) -> list[float] | None:
    """A tenant's first and last request, in seconds from the enqueue (JSON-ready)."""
    return None if span is None else [round(span[0] - started, 3), round(span[1] - started, 3)]
