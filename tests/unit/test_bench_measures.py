"""The bench's per-scenario figures: throughput buckets, % of the limit, CPU per request, enqueue-to-Graph
latency, peak RSS; the chart; the table's new rows; `--peer` and the scenario names on the command line."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from worker.bench import figures, outcome, raw
from worker.bench.process import ProcessSampler, Usage, vmhwm_bytes
from worker.bench.report import peer_table, scenario_table
from worker.bench.scenarios import SCENARIOS, scenario_names
from worker.cli import app

TENANT = "11111111-1111-4111-8111-111111111111"


def _at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _record(at: float, endpoint: str = "bulk", target: str | None = None, recipients: int = 100) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "target": target,
        "tenant_id": TENANT,
        "received_at": _at(at),
        "recipients": recipients,
    }


def test_per_second_buckets_from_the_start() -> None:
    assert figures.per_second([100.2, 100.9, 101.0, 103.5], start=100.0) == [2, 1, 0, 1]
    assert figures.per_second([99.5], start=100.0) == [1]  # before the start: the first bucket
    assert figures.per_second([], start=100.0) == []


def test_pct_of_limit() -> None:
    assert figures.pct_of_limit(1.94, 2.0) == 97.0
    assert figures.pct_of_limit(400.0, None) is None
    assert figures.pct_of_limit(None, 2.0) is None


def test_cpu_ms_per_request_sums_every_process_since_the_start() -> None:
    before = {10: 1.0, 11: 2.0}
    after = {10: 1.5, 11: 2.25, 12: 0.25}  # 12 is a pool child that began meanwhile
    assert figures.cpu_ms_per_request(before, after, requests=500) == 2.0
    assert figures.cpu_ms_per_request(before, after, requests=0) is None


def test_enqueue_latencies_run_from_each_jobs_creation() -> None:
    records = [_record(10.5), _record(11.0), _record(12.25, "user", "U1", 1), _record(13.0, "user", "u9", 1)]
    created = {("bulk", TENANT): 10.0, ("user", "u1"): 12.0}
    assert figures.enqueue_latencies(records, created) == pytest.approx([0.5, 1.0, 0.25])
    assert figures.job_key(records[2]) == ("user", "u1")


def test_throughput_against_the_limit() -> None:
    records = [_record(100.0 + 0.5 * i) for i in range(9)] + [_record(101.2, "user", "u1", 1)]
    found = outcome.throughput(records, started=99.6, limit=2.0, endpoint="bulk")
    assert found["requests_per_s"] == 2.0
    assert found["recipients_per_s"] == 200.0
    assert found["pct_of_limit"] == 100.0
    assert found["first_request_after_s"] == pytest.approx(0.4)
    assert found["throughput_per_s"] == [2, 2, 2, 2, 1]  # 0.4 s, 0.9 s, ... 4.4 s after the enqueue
    assert found["rate_of"] == "bulk"
    unlimited = outcome.throughput(records, started=99.6, limit=None)
    assert unlimited["pct_of_limit"] is None
    assert sum(unlimited["throughput_per_s"]) == 10


def test_vmhwm_from_proc_status() -> None:
    assert vmhwm_bytes("Name:\tpython\nVmPeak:\t  300 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n") == 2048 * 1024
    assert vmhwm_bytes("Name:\tpython\n") is None


def test_usage_figures_give_the_max_and_each_process() -> None:
    mb = 1024 * 1024
    usage = Usage(
        owner={10: ("bench0@h", "worker"), 11: ("bench1@h", "worker"), 12: ("bench1@h", "pool")},
        cpu_before={10: 1.0, 11: 1.0},
        cpu_after={10: 1.6, 11: 1.3, 12: 0.1},
        peak_rss={10: 80 * mb, 11: 95 * mb, 12: 40 * mb},
    )
    found = usage.figures(requests=400)
    assert found["worker_cpu_s"] == 1.0
    assert found["worker_cpu_ms_per_request"] == 2.5
    assert found["worker_peak_rss_mb"] == 95.0
    assert [(p["node"], p["role"], p["peak_rss_mb"]) for p in found["worker_processes"]] == [
        ("bench0@h", "worker", 80.0),
        ("bench1@h", "pool", 40.0),
        ("bench1@h", "worker", 95.0),
    ]
    assert Usage().figures(requests=0)["worker_peak_rss_mb"] is None


def test_the_sampler_reads_a_process_and_its_children() -> None:
    pytest.importorskip("psutil")
    script = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        sampler = ProcessSampler({"w@h": parent.pid}, interval=0.05).start()
        import psutil  # type: ignore[import-untyped]  # noqa: PLC0415

        for _ in range(1000):  # until the grandchild exists (at most 10 s)
            if psutil.Process(parent.pid).children():
                break
            time.sleep(0.01)
        time.sleep(0.1)  # sampled at least once since
        usage = sampler.stop()
        sampler.stop()  # idempotent
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
    assert sorted(role for _, role in usage.owner.values()) == ["pool", "worker"]
    assert usage.peak_rss[parent.pid] > 0
    assert usage.figures(requests=1)["worker_cpu_ms_per_request"] is not None


def test_raw_targets() -> None:
    met = {"requests_per_s": 400.0, "worker_cpu_ms_per_request": 2.0, "worker_peak_rss_mb": 120.0}
    assert all(raw.targets(met).values())
    missed = raw.targets({"requests_per_s": None, "worker_cpu_ms_per_request": 3.0, "worker_peak_rss_mb": 151.0})
    assert not any(missed.values())


def test_the_chart_has_a_panel_per_scenario_with_traffic(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from worker.bench.plot import panels, render, write_plot  # noqa: PLC0415

    results = {
        "raw": {"throughput_per_s": [120, 410, 390, 80], "limit_requests_per_s": None, "requests_per_s": 398.0},
        "tenant1": {"throughput_per_s": [2] * 60, "limit_requests_per_s": 2.0, "pct_of_limit": 99.1},
        "singles": {"throughput_per_s": [2] * 30, "limit_requests_per_s": 2.0, "rate_of": "bulk"},
        "enqueue": {"enqueue_s": 1.6},  # producers only: no panel
    }
    drawn = panels(results)
    assert [panel.name for panel in drawn] == ["raw", "tenant1", "singles"]
    figure = render(drawn)
    assert len(figure.axes) == 3
    assert [len(ax.lines) for ax in figure.axes] == [0, 1, 1]  # the limit line, none for the unthrottled run
    path = write_plot(tmp_path / "charts" / "bench.png", drawn)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    height = int.from_bytes(data[20:24], "big")
    assert height == pytest.approx(3 * 2.4 * 100, abs=2)
    with pytest.raises(ValueError, match="nothing to draw"):
        render([])


def test_the_table_shows_every_new_figure() -> None:
    result = {
        "completed": True,
        "job_states": {"completed": 1},
        "requests_per_s": 401.5,
        "recipients_per_s": 40150.0,
        "requests_per_s_from_enqueue": 380.2,
        "rate_of": "all",
        "limit_requests_per_s": None,
        "pct_of_limit": None,
        "first_request_after_s": 0.12,
        "enqueue_to_graph_p50_s": 1.2,
        "enqueue_to_graph_p99_s": 2.4,
        "worker_cpu_s": 4.1,
        "worker_cpu_ms_per_request": 2.05,
        "worker_peak_rss_mb": 98.5,
        "worker_processes": [{"node": "bench0@h", "role": "worker", "pid": 1, "cpu_s": 2.0, "peak_rss_mb": 98.5}],
        "throttled_429": 0,
        "throttled_pct": 0.0,
        "lost": 0,
        "duplicated": 0,
        "targets": {"requests_per_s_at_least_350": True, "cpu_ms_per_request_at_most_2_5": False},
        "ok": True,
    }
    paced = result | {"limit_requests_per_s": 2.0, "pct_of_limit": 97.5, "rate_of": "bulk", "targets": {}}
    producer = {"completed": True, "producer_peak_rss_mb": 512.3, "producer_recipients_listed_rss_mb": 400.0}
    table = scenario_table({"workdir": "/tmp/x", "scenarios": {"raw": result, "singles": paced, "enqueue": producer}})
    rows = {label: (r, s, e) for label, r, s, e in zip(*(c.cells for c in table.columns), strict=True)}
    assert rows["requests/s at Graph (first to last)"][:2] == ("401.5", "401.5 (bulk)")
    assert rows["recipients/s"][0] == "40,150.0"
    assert rows["% of the limit"][:2] == ("no limit", "97.5% of 2/s")
    assert rows["p50 job created->Graph (s)"][0] == "1.200"
    assert rows["p99 job created->Graph (s)"][0] == "2.400"
    assert rows["worker CPU ms / Graph request"][0] == "2.050"
    assert rows["peak RSS, largest process (MB)"][0] == "98.5"
    assert rows["peak RSS per process (MB)"][0] == "bench0 98.5"
    assert rows["producer peak RSS (MB)"][2] == "512.3"
    assert rows["lost"][0] == "0"
    assert rows["duplicated"][0] == "0"
    assert "429s (% of answers)" in rows
    assert "<= 2.5 CPU ms/request" in str(rows["issue targets"][0])


def test_the_peer_table() -> None:
    peer = {
        "rows": [
            {
                "client": "teams-notify",
                "delivered": 3020,
                "lost": 0,
                "throttled_429": 0,
                "token_requests": 1,
                "seconds": 15.2,
            },
            {
                "client": "msgraph-sdk",
                "delivered": 2900,
                "lost": 120,
                "throttled_429": 84,
                "token_requests": 1,
                "seconds": 41.0,
            },
        ],
        "ok": True,
    }
    table = peer_table(peer)
    assert [c.header for c in table.columns] == ["client", "delivered", "lost", "429s", "token requests", "time (s)"]
    assert list(table.columns[0].cells) == ["teams-notify", "msgraph-sdk"]
    assert list(table.columns[3].cells) == ["0", "84"]
    assert list(table.columns[5].cells) == ["15.20", "41.00"]


def test_scenario_names_include_raw_tenant1_and_all() -> None:
    assert scenario_names(["raw"]) == ["raw"]
    assert scenario_names(["tenant1,raw"]) == ["raw", "tenant1"]
    assert scenario_names(["all"]) == list(SCENARIOS)
    named = {"raw", "tenant1", "tenants2", "tenants10", "singles", "singles-raw", "enqueue"}
    assert named | {"kill-worker", "restart-redis"} == set(SCENARIOS)


def test_bench_peer_without_its_module_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "worker.bench.peer", None)  # importing it raises ImportError
    result = CliRunner().invoke(app, ["bench", "--peer", "msgraph-sdk"])
    assert result.exit_code == 2
    assert "--peer msgraph-sdk" in result.output
    assert "Traceback" not in result.output


def test_bench_peer_without_the_sdk_is_exit_2_before_any_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.bench.peer  # noqa: PLC0415

    def missing(*_: Any, **__: Any) -> dict[str, Any]:
        raise ImportError("msgraph-sdk is not installed: pip install 'teams-notify[bench]'")

    ran: list[str] = []
    monkeypatch.setattr(worker.bench.peer, "run_peer", missing)
    monkeypatch.setattr("worker.bench.scenarios.run_scenarios", lambda *a, **k: ran.append("ran") or {"ok": True})
    result = CliRunner().invoke(app, ["bench", "--peer", "msgraph-sdk", "--scenario", "raw"])
    assert result.exit_code == 2
    assert "pip install 'teams-notify[bench]'" in result.output
    assert ran == []


def test_bench_rejects_an_unknown_peer_and_scenario() -> None:
    assert CliRunner().invoke(app, ["bench", "--peer", "other-sdk"]).exit_code == 2
    assert CliRunner().invoke(app, ["bench", "--scenario", "tenants3"]).exit_code == 2
