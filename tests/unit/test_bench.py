"""The benchmark's arithmetic: percentiles, losses, tenant windows and shares, pacing, scenario names."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.bench import figures
from worker.bench.report import scenario_table
from worker.bench.scenarios import SCENARIOS, scenario_names

TENANT_A = "11111111-1111-4111-8111-111111111111"
TENANT_B = "22222222-2222-4222-8222-222222222222"


def _at(seconds: float) -> str:
    """A `received_at` as the simulator writes it, `seconds` after the epoch."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _bulk(tenant: str, at: float, users: list[str]) -> dict[str, Any]:
    return {
        "endpoint": "bulk",
        "target": None,
        "tenant_id": tenant,
        "received_at": _at(at),
        "recipients": len(users),
        "body": {"recipients": [{"userId": u} for u in users]},
    }


def test_epoch_reads_the_simulators_timestamps() -> None:
    assert figures.epoch(_at(1_700_000_000.25)) == pytest.approx(1_700_000_000.25)


def test_percentile_interpolates_between_ranks() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert figures.percentile(values, 50) == 3.0
    assert figures.percentile(values, 0) == 1.0
    assert figures.percentile(values, 100) == 5.0
    assert figures.percentile(values, 25) == 2.0
    assert figures.percentile([1.0, 2.0], 50) == 1.5
    assert figures.percentile(list(map(float, range(1, 21))), 99) == pytest.approx(19.81)
    assert figures.percentile([7.0], 99) == 7.0
    assert figures.percentile([], 50) is None
    with pytest.raises(ValueError, match="percentile"):
        figures.percentile([1.0], 101)


def test_latency_summary() -> None:
    assert figures.latency_summary([0.1, 0.2, 0.3]) == {"p50": 0.2, "p99": 0.298, "max": 0.3}
    assert figures.latency_summary([]) == {"p50": None, "p99": None, "max": None}


def test_deliveries_count_bulk_user_and_member_sends_per_tenant() -> None:
    records = [
        _bulk(TENANT_A, 1, ["U1", "u2"]),
        _bulk(TENANT_B, 2, ["u1"]),
        {"endpoint": "user", "target": "u3", "tenant_id": TENANT_A, "body": {}},
        {
            "endpoint": "chat",
            "target": "19:x@thread.v2",
            "tenant_id": TENANT_A,
            "body": {"recipient": {"userId": "u4"}},
        },
    ]
    assert figures.deliveries(records) == Counter(
        {
            ("bulk", TENANT_A, "u1"): 1,
            ("bulk", TENANT_A, "u2"): 1,
            ("bulk", TENANT_B, "u1"): 1,
            ("user", TENANT_A, "u3"): 1,
            ("chat", TENANT_A, "u4"): 1,
        }
    )


def test_lost_and_duplicated() -> None:
    expected = [("bulk", TENANT_A, "u1"), ("bulk", TENANT_A, "u2"), ("bulk", TENANT_A, "u3")]
    delivered = Counter({("bulk", TENANT_A, "u1"): 3, ("bulk", TENANT_A, "u2"): 1, ("bulk", TENANT_B, "u3"): 1})
    assert figures.lost_and_duplicated(expected, delivered) == (1, 2)
    assert figures.lost_and_duplicated([], Counter()) == (0, 0)


def test_throttled_share_of_answers() -> None:
    assert figures.throttled({"202": 99, "429": 1}) == {
        "throttled_429": 1,
        "responses_total": 100,
        "throttled_pct": 1.0,
    }
    assert figures.throttled({}) == {"throttled_429": 0, "responses_total": 0, "throttled_pct": 0.0}


def test_recovery_is_the_time_beyond_pacing() -> None:
    assert figures.paced_seconds(75, 2.0) == 37.5
    assert figures.paced_seconds(0, 2.0) == 0.0
    assert figures.paced_seconds(-3, 2.0) == 0.0
    assert figures.recovery_seconds(event_at=100.0, completed_at=140.0, remaining=75, rate=2.0) == 2.5


def test_all_active_window_is_the_overlap_of_every_tenants_span() -> None:
    assert figures.all_active_window({"a": (0.0, 30.0), "b": (2.0, 31.0)}) == (2.0, 30.0)
    assert figures.all_active_window({"a": (0.0, 10.0), "b": (11.0, 20.0)}) is None
    assert figures.all_active_window({}) is None


def test_tenant_rates_and_shares_over_the_window() -> None:
    # Tenant A sends one full request every 0.5 s from t=0, tenant B one every second from t=1.
    records = [_bulk(TENANT_A, 0.5 * i, [f"a{i}-{j}" for j in range(100)]) for i in range(21)]
    records += [_bulk(TENANT_B, 1.0 + i, [f"b{i}-{j}" for j in range(100)]) for i in range(10)]
    spans = figures.tenant_spans(records)
    assert spans == {TENANT_A: (0.0, 10.0), TENANT_B: (1.0, 10.0)}
    window = figures.all_active_window(spans)
    assert window == (1.0, 10.0)
    rates = figures.tenant_rates(records, [TENANT_A, TENANT_B], window)
    assert rates[TENANT_A] == pytest.approx(200.0)  # 18 requests in [1, 10): 1.0, 1.5, ... 9.5
    assert rates[TENANT_B] == pytest.approx(100.0)  # 9 requests in [1, 10)
    fractions = figures.shares(rates)
    assert fractions[TENANT_A] == pytest.approx(2 / 3)
    assert figures.share_deviation(fractions) == pytest.approx(1 / 3)
    assert figures.share_deviation({"a": 0.5, "b": 0.5}) == 0.0
    assert figures.share_deviation({}) is None
    assert figures.shares({"a": 0.0}) == {"a": 0.0}


def test_arrival_rate_counts_intervals() -> None:
    assert figures.arrival_rate([0.0, 0.5, 1.0, 1.5, 2.0]) == 2.0
    assert figures.arrival_rate([3.0]) is None
    assert figures.arrival_rate([1.0, 1.0]) is None


def test_tenant_limit_is_the_fair_part_of_the_app_wide_limit() -> None:
    assert figures.tenant_limit(2, 2.0, 20.0) == 2.0
    assert figures.tenant_limit(10, 2.0, 20.0) == 2.0
    assert figures.tenant_limit(40, 2.0, 20.0) == 0.5


def test_scenario_names() -> None:
    assert scenario_names(["all"]) == list(SCENARIOS)
    assert scenario_names(["restart-redis,singles", "singles"]) == ["singles", "restart-redis"]
    assert scenario_names(["Tenants2 , tenants10"]) == ["tenants2", "tenants10"]
    with pytest.raises(ValueError, match="unknown scenario 'tenants3'"):
        scenario_names(["tenants3"])
    with pytest.raises(ValueError, match="name a scenario"):
        scenario_names([","])


def test_the_table_puts_scenarios_side_by_side() -> None:
    report = {
        "workdir": "/tmp/x",
        "scenarios": {
            "singles": {"completed": True, "job_states": {"completed": 21}, "single_p99_s": 0.5, "ok": True},
            "tenants2": {
                "completed": True,
                "job_states": {"completed": 2},
                "app_requests_per_s": None,
                "app_pct_of_limit": None,
                "window_s": None,
                "per_tenant": [{"tenant": TENANT_A, "span_s": None}],
                "targets": {"each_tenant_95pct_of_limit": False, "shares_within_10pct": True},
                "ok": True,
            },
            "kill-worker": {"completed": False, "error": "RuntimeError: boom", "ok": False},
        },
    }
    table = scenario_table(report)
    assert [column.header for column in table.columns] == ["figure", "singles", "tenants2", "kill-worker"]
    labels = list(table.columns[0].cells)
    assert "single p99 enqueue->Graph (s)" in labels
    assert "recovery (s)" not in labels  # no scenario has that figure
    rows = dict(zip(labels, table.columns[2].cells, strict=True))
    assert rows["per tenant recipients/s"] == "no overlap"
    assert "each >= 95% of limit" in str(rows["issue targets"])
    assert "shares within 10%" not in str(rows["issue targets"])
