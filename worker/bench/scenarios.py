"""`teams-notify bench --scenario NAME`: raw capacity, the fleet at Graph's limits, after a crash, producers.

Each fleet scenario starts its own private Redis, simulator (enforcing Graph's published limits, or none for
`raw`) and workers, enqueues its jobs through the public producer API, and reads what reached Graph from the
simulator's accepted requests: throughput, latencies from their `received_at`, rates per tenant, lost and
duplicated deliveries; and samples the workers' CPU and memory meanwhile. A scenario whose jobs have not
ended within the timeout is reported, with what it measured, as failed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from worker.bench.disruption import disruption_scenario
from worker.bench.enqueue import enqueue
from worker.bench.outcome import Run, Say
from worker.bench.paced import singles_scenario, tenant_scenario
from worker.bench.raw import raw

#: Every scenario, in the order `all` runs them.
SCENARIOS: dict[str, Run] = {
    "raw": raw,
    "tenant1": tenant_scenario(1, recipients=12_000),
    "tenants2": tenant_scenario(2),
    "tenants10": tenant_scenario(10),
    "singles": singles_scenario(),
    "singles-raw": singles_scenario("off", latency_ms=300, bulk_recipients=20_000),
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


def run_scenarios(
    names: list[str], timeout: float = 900, say: Say | None = None, plot: Path | None = None
) -> dict[str, Any]:
    """Runs the scenarios one after another (a scenario that fails to run is reported and the rest go on),
    then draws their throughput, one panel each, into the PNG `plot` (when given)."""
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
    report: dict[str, Any] = {
        "scenarios": results,
        "ok": all(r["ok"] for r in results.values()),
        "workdir": str(workdir),
    }
    if plot is not None:
        report |= _draw(plot, results)
    return report


def _draw(path: Path, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The chart, or why there is none (no scenario with Graph traffic, or matplotlib missing)."""
    from worker.bench.plot import panels, write_plot  # noqa: PLC0415 - matplotlib only when drawing

    drawn = panels(results)
    if not drawn:
        return {"plot": None}
    try:
        return {"plot": str(write_plot(path, drawn))}
    except ImportError as exc:
        return {"plot": None, "plot_error": f"no chart: {exc} (pip install 'teams-notify[bench]')"}
