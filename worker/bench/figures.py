"""The benchmark's arithmetic, as small pure functions over plain data (unit-tested on their own)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

#: One delivery as the simulator saw it: (endpoint kind, tenant, user).
Delivery = tuple[str, str, str]


def epoch(received_at: str) -> float:
    """Epoch seconds of the simulator's `received_at` (ISO 8601 in UTC, `Z`-suffixed)."""
    return datetime.fromisoformat(received_at.replace("Z", "+00:00")).timestamp()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {q!r}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max of latencies in seconds (rounded to the millisecond)."""
    return {
        "p50": _round(percentile(latencies, 50)),
        "p99": _round(percentile(latencies, 99)),
        "max": _round(max(latencies, default=None)),
    }


def deliveries(records: Iterable[Mapping[str, Any]]) -> Counter[Delivery]:
    """How often each (endpoint, tenant, user) was notified, from the simulator's accepted requests."""
    found: Counter[Delivery] = Counter()
    for record in records:
        kind, tenant, body = record["endpoint"], str(record["tenant_id"]).lower(), record["body"]
        if kind == "bulk":
            found.update((kind, tenant, str(r["userId"]).lower()) for r in body.get("recipients", []))
        elif kind == "user":
            found[(kind, tenant, str(record["target"]).lower())] += 1
        else:  # chat and team sends notify their body's recipient
            recipient = body.get("recipient") or {}
            found[(kind, tenant, str(recipient.get("userId", record["target"])).lower())] += 1
    return found


def lost_and_duplicated(expected: Iterable[Delivery], delivered: Counter[Delivery]) -> tuple[int, int]:
    """Expected deliveries never made, and deliveries made more than once (each extra copy counts)."""
    wanted = set(expected)
    lost = sum(1 for item in wanted if delivered[item] == 0)
    duplicated = sum(count - 1 for item, count in delivered.items() if item in wanted and count > 1)
    return lost, duplicated


def throttled(responses: Mapping[str, int]) -> dict[str, float | int | None]:
    """429 answers, as a count and as a percentage of all Graph answers (statuses as strings)."""
    total = sum(responses.values())
    count = responses.get("429", 0)
    return {
        "throttled_429": count,
        "responses_total": total,
        "throttled_pct": _round(100 * count / total if total else 0.0, 2),
    }


def paced_seconds(requests: int, rate: float) -> float:
    """The least time `requests` more requests take at `rate` requests a second."""
    return requests / rate if requests > 0 else 0.0


def recovery_seconds(event_at: float, completed_at: float, remaining: int, rate: float) -> float:
    """Time from a disruption's end to the job's end, beyond what pacing alone needs for the remainder."""
    return completed_at - event_at - paced_seconds(remaining, rate)


def all_active_window(spans: Mapping[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The span during which every tenant was sending ((first, last) request of each), None if they never overlap."""
    if not spans:
        return None
    start = max(first for first, _ in spans.values())
    end = min(last for _, last in spans.values())
    return (start, end) if end > start else None


def tenant_spans(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per tenant, the times of its first and last accepted bulk request."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record["endpoint"] == "bulk":
            times[str(record["tenant_id"]).lower()].append(epoch(record["received_at"]))
    return {tenant: (min(ts), max(ts)) for tenant, ts in times.items()}


def tenant_rates(
    records: Iterable[Mapping[str, Any]], tenants: Sequence[str], window: tuple[float, float]
) -> dict[str, float]:
    """Recipients a second each tenant got through within the window (half-open: [start, end))."""
    start, end = window
    sent = dict.fromkeys((t.lower() for t in tenants), 0)
    for record in records:
        tenant = str(record["tenant_id"]).lower()
        if record["endpoint"] == "bulk" and tenant in sent and start <= epoch(record["received_at"]) < end:
            sent[tenant] += int(record["recipients"])
    return {tenant: count / (end - start) for tenant, count in sent.items()}


def arrival_rate(times: Sequence[float]) -> float | None:
    """Requests a second from first to last arrival ((n - 1) intervals), None for fewer than two."""
    if len(times) < 2 or max(times) == min(times):
        return None
    return (len(times) - 1) / (max(times) - min(times))


def shares(rates: Mapping[str, float]) -> dict[str, float]:
    """Each tenant's fraction of the summed rate (all zero when nothing was sent)."""
    total = sum(rates.values())
    return {tenant: (rate / total if total else 0.0) for tenant, rate in rates.items()}


def share_deviation(fractions: Mapping[str, float]) -> float | None:
    """The largest relative distance of a tenant's share from the fair share 1/N (0.1 means 10%)."""
    if not fractions:
        return None
    fair = 1 / len(fractions)
    return max(abs(share - fair) / fair for share in fractions.values())


def tenant_limit(tenants: int, per_tenant: float, per_app: float) -> float:
    """Requests a second one tenant can get when `tenants` share the app-wide limit fairly."""
    return min(per_tenant, per_app / tenants) if tenants else per_tenant


def per_second(times: Iterable[float], start: float) -> list[int]:
    """Requests in each 1 s bucket from `start` ([start + i, start + i + 1)), up to the last one's bucket."""
    counts: list[int] = []
    for at in times:
        bucket = max(0, math.floor(at - start))
        counts.extend([0] * (bucket + 1 - len(counts)))
        counts[bucket] += 1
    return counts


def pct_of_limit(rate: float | None, limit: float | None) -> float | None:
    """A rate as a percentage of its limit (None without a rate or a limit)."""
    if rate is None or not limit:
        return None
    return round(100 * rate / limit, 1)


def cpu_ms_per_request(before: Mapping[int, float], after: Mapping[int, float], requests: int) -> float | None:
    """CPU milliseconds per request: each process's CPU seconds at the end less at the start (a process
    that began meanwhile started from 0), summed, over the requests; None for no requests."""
    if requests <= 0:
        return None
    used = sum(max(0.0, seconds - before.get(pid, 0.0)) for pid, seconds in after.items())
    return round(1000 * used / requests, 3)


def job_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """Which job a recorded request belongs to, in the benchmarks: a bulk job per tenant, a single send per target."""
    if record["endpoint"] == "bulk":
        return ("bulk", str(record["tenant_id"]).lower())
    return (str(record["endpoint"]), str(record["target"]).lower())


def enqueue_latencies(records: Iterable[Mapping[str, Any]], created: Mapping[tuple[str, str], float]) -> list[float]:
    """Seconds from each request's job being created to Graph receiving the request (jobs not in `created` skipped)."""
    latencies = []
    for record in records:
        began = created.get(job_key(record))
        if began is not None:
            latencies.append(epoch(record["received_at"]) - began)
    return latencies


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
