"""`teams-notify bench --scenario NAME`: how the fleet behaves at Graph's limits, and after a crash.

Each scenario starts its own private Redis, simulator (enforcing Graph's published limits) and workers,
enqueues its jobs through the public producer API, and reads what reached Graph from the simulator's
accepted requests: latencies from their `received_at`, rates per tenant, lost and duplicated deliveries.
A scenario whose jobs have not ended within the timeout is reported, with what it measured, as failed.
"""

from __future__ import annotations

import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from worker.bench import figures
from worker.bench.enqueue import enqueue
from worker.bench.fleet import Fleet, bulk, notification, tenants, users
from worker.demo import DEMO_TENANT
from worker.simulator.config import GRAPH_RATE_LIMITS

Say = Callable[[str], None]
Run = Callable[[Path, float, Say], dict[str, Any]]

#: Graph's published bulk limits, in requests a second.
BULK_TENANT = GRAPH_RATE_LIMITS["bulk_tenant"]
BULK_APP = GRAPH_RATE_LIMITS["bulk_app"]
#: Recipients in one bulk request.
PER_REQUEST = 100
#: Recipients per tenant in the tenant scenarios: about 30 s of requests at 2/s.
TENANT_RECIPIENTS = 6_000
#: How far into a job the crash scenarios strike, as a fraction of its requests accepted by Graph.
DISRUPT_AT = 0.25
#: Seconds Redis stays down in `restart-redis`.
REDIS_DOWN_SECONDS = 5.0
#: Seconds to wait after the jobs end before reading what Graph accepted, so a late duplicate is counted.
SETTLE_SECONDS = 2.0
#: The issue's targets.
SINGLE_P99_TARGET = 1.0
TENANT_LIMIT_TARGET = 95.0
SHARE_DEVIATION_TARGET = 0.10
THROTTLED_TARGET = 1.0


def singles(workdir: Path, timeout: float, say: Say) -> dict[str, Any]:
    """Single sends during a saturating bulk job: seconds from `notify_user` to Graph, p50/p99/max."""
    count, bulk_recipients = 20, 6_000
    requests = bulk_recipients // PER_REQUEST
    with Fleet(workdir, workers=1, concurrency=4, rate_limits="graph") as fleet:
        deadline = time.monotonic() + timeout
        addressed, singled = users(bulk_recipients), users(count, series=1)
        started = time.time()
        job_ids = [fleet.producer.notify_recipients(bulk(addressed))]
        paced = figures.paced_seconds(requests, BULK_TENANT)
        say(f"singles: bulk job of {requests} requests enqueued; {count} single sends over its middle")
        enqueued: dict[str, float] = {}
        for i, user in enumerate(singled):  # spread over the middle half of the job's paced time
            time.sleep(max(0.0, started + paced * (0.25 + 0.5 * i / (count - 1)) - time.time()))
            enqueued[user] = time.time()
            job_ids.append(fleet.producer.notify_user(user, notification()))
        statuses, ended_at = fleet.wait_jobs(job_ids, deadline)
        records = _settled(fleet, ended_at)
        outcome = _outcome(fleet, records, statuses, ended_at, started, timeout)
    received: dict[str, float] = {}
    for record in records:
        if record["endpoint"] == "user":
            received.setdefault(str(record["target"]).lower(), figures.epoch(record["received_at"]))
    latencies = [received[user] - enqueued[user] for user in singled if user in received]
    summary = figures.latency_summary(latencies)
    expected = _expected("bulk", DEMO_TENANT, addressed) + _expected("user", DEMO_TENANT, singled)
    return (
        outcome
        | _losses(records, expected)
        | {
            "setup": {"workers": 1, "concurrency": 4, "bulk_recipients": bulk_recipients, "single_sends": count},
            "singles_delivered": len(latencies),
            "single_p50_s": summary["p50"],
            "single_p99_s": summary["p99"],
            "single_max_s": summary["max"],
            "single_latencies_s": [round(v, 3) for v in latencies],
            "targets": {"single_p99_under_1s": summary["p99"] is not None and summary["p99"] < SINGLE_P99_TARGET},
        }
    )


def tenant_scenario(count: int) -> Run:
    """Bulk jobs for `count` tenants at once: each tenant's rate, its share of the app-wide rate, 429s."""

    def run(workdir: Path, timeout: float, say: Say) -> dict[str, Any]:
        with Fleet(workdir, workers=2, concurrency=8, rate_limits="graph") as fleet:
            deadline = time.monotonic() + timeout
            ids, addressed = tenants(count), users(TENANT_RECIPIENTS)
            body = bulk(addressed)
            started = time.time()
            job_ids = [fleet.producer.notify_recipients(body, tenant_id=tenant) for tenant in ids]
            say(f"tenants{count}: {count} bulk jobs of {TENANT_RECIPIENTS // PER_REQUEST} requests enqueued")
            statuses, ended_at = fleet.wait_jobs(job_ids, deadline)
            records = _settled(fleet, ended_at)
            outcome = _outcome(fleet, records, statuses, ended_at, started, timeout)
        expected = [item for tenant in ids for item in _expected("bulk", tenant, addressed)]
        fairness = _fairness(records, ids, started)
        fairness["targets"]["throttled_at_most_1pct"] = outcome["throttled_pct"] <= THROTTLED_TARGET
        return (
            outcome
            | _losses(records, expected)
            | fairness
            | {
                "setup": {"workers": 2, "concurrency": 8, "tenants": count, "recipients_per_tenant": TENANT_RECIPIENTS},
            }
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
            event["workers_alive"] = sum(w.running() for w in fleet.workers)
            records = _settled(fleet, ended_at)
            outcome = _outcome(fleet, records, statuses, ended_at, started, timeout)
        paced = figures.paced_seconds(remaining, BULK_TENANT)
        after = None if ended_at is None else ended_at - back_at
        recovery = None if ended_at is None else figures.recovery_seconds(back_at, ended_at, remaining, BULK_TENANT)
        return (
            outcome
            | _losses(records, _expected("bulk", DEMO_TENANT, addressed))
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


def _settled(fleet: Fleet, ended_at: float | None) -> list[dict[str, Any]]:
    """What Graph accepted, read a moment after the jobs ended (at once after a timeout)."""
    if ended_at is not None:
        time.sleep(max(0.0, ended_at + SETTLE_SECONDS - time.time()))
    return fleet.sim.recorded_requests()


def _expected(kind: str, tenant: str, addressed: Iterable[str]) -> list[figures.Delivery]:
    return [(kind, tenant.lower(), user.lower()) for user in addressed]


def _losses(records: list[dict[str, Any]], expected: list[figures.Delivery]) -> dict[str, int]:
    lost, duplicated = figures.lost_and_duplicated(expected, figures.deliveries(records))
    return {"lost": lost, "duplicated": duplicated}


def _outcome(
    fleet: Fleet,
    records: list[dict[str, Any]],
    statuses: dict[str, dict[str, Any]],
    ended_at: float | None,
    started: float,
    timeout: float,
) -> dict[str, Any]:
    """What every scenario reports: whether its jobs completed, how long they took, Graph's answers."""
    stats: dict[str, Any] = fleet.sim.stats()
    states = Counter(str(status["state"]) for status in statuses.values())
    completed = ended_at is not None and set(states) == {"completed"}
    return {
        "completed": completed,
        "error": None if ended_at is not None else f"jobs not ended after {timeout:g}s",
        "job_states": dict(states),
        "seconds": None if ended_at is None else round(ended_at - started, 3),
        "accepted_requests": len(records),
        "responses": stats["responses"],
        **figures.throttled(stats["responses"]),
        "logs": str(fleet.workdir),
    }


SCENARIOS: dict[str, Run] = {
    "singles": singles,
    "tenants2": tenant_scenario(2),
    "tenants10": tenant_scenario(10),
    "kill-worker": disruption_scenario("kill-worker"),
    "restart-redis": disruption_scenario("restart-redis"),
    "enqueue": enqueue,
}


def scenario_names(values: Iterable[str]) -> list[str]:
    """The scenarios named (repeated options and comma lists; `all`), in the canonical order, once each."""
    chosen: set[str] = set()
    for value in values:
        for name in (part.strip().lower() for part in value.split(",")):
            if name == "all":
                chosen.update(SCENARIOS)
            elif name in SCENARIOS:
                chosen.add(name)
            elif name:
                raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)}, all)")
    if not chosen:
        raise ValueError(f"name a scenario: {', '.join(SCENARIOS)} or all")
    return [name for name in SCENARIOS if name in chosen]


def run_scenarios(names: list[str], timeout: float = 900, say: Say | None = None) -> dict[str, Any]:
    """Runs the scenarios one after another; a scenario that fails to run is reported and the rest go on."""
    say = say or (lambda _: None)
    workdir = Path(tempfile.mkdtemp(prefix="teams-notify-bench-"))
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        began = time.monotonic()
        say(f"{name}: starting (logs in {workdir / name})")
        try:
            result = SCENARIOS[name](workdir / name, timeout, say)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            result = {"completed": False, "error": f"{type(exc).__name__}: {exc}", "logs": str(workdir / name)}
        result["ok"] = bool(result.get("completed")) and result.get("lost") == 0 and not result.get("error")
        result["wall_s"] = round(time.monotonic() - began, 1)
        results[name] = result
        say(f"{name}: {'ok' if result['ok'] else 'FAILED'} in {result['wall_s']:g}s")
    return {"scenarios": results, "ok": all(r["ok"] for r in results.values()), "workdir": str(workdir)}
