"""`teams-notify bench`: the options, checks and output of the throughput run, the scenarios and `--peer`.

Only the command itself is here: what it runs (worker.bench.throughput, .scenarios, .report, .peer) is
imported when it runs, so that listing the commands needs none of the bench extra.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from producers.errors import TeamsNotifyError
from worker import config
from worker.console import emit_json, fail


def bench(
    recipients: Annotated[int, typer.Option("--recipients", help="users in the bulk job")] = 10_000,
    workers: Annotated[int, typer.Option("--workers", help="worker processes")] = 2,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="threads per worker")] = 8,
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="simulated Graph latency")] = 0,
    rate_limits: Annotated[str, typer.Option("--rate-limits", help="graph, off, or name=value,...")] = "off",
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            metavar="NAME",
            help="instead of the throughput run: raw, tenant1, tenants2, tenants10, singles, singles-raw, kill-worker, "
            "restart-redis, enqueue or all (repeatable, or a comma list); each sets up its own fleet",
        ),
    ] = None,
    plot: Annotated[
        Path,
        typer.Option(
            "--plot", metavar="PATH", help="with --scenario: the PNG of requests/s over time against the limit"
        ),
    ] = Path("bench.png"),
    peer: Annotated[
        str | None,
        typer.Option(
            "--peer",
            metavar="CLIENT",
            help="also send the same throttled workload with another client, side by side: msgraph-sdk",
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="seconds a run (each scenario) may take [600; 900 a scenario]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Measure delivery throughput of a local fleet against the simulator (lost and duplicated too), or with
    --scenario: raw capacity, the fleet at Graph's limits, recovery after crashes, producers; with --peer:
    teams-notify against Microsoft's msgraph-sdk on the same workload."""
    from worker.bench import throughput  # noqa: PLC0415 - heavy, and only for this command

    if recipients < 1 or workers < 1 or concurrency < 1:
        fail("--recipients, --workers and --concurrency must be at least 1", 2)
    if timeout is not None and timeout <= 0:
        fail("--timeout must be positive", 2)
    if peer is not None and peer.strip().lower() != "msgraph-sdk":
        fail(f"--peer: unknown client {peer!r} (known: msgraph-sdk)", 2)
    if scenario or peer:
        _bench_scenarios(scenario or [], plot, peer is not None, timeout or 900, as_json)
    try:
        config.parse_rate_limits(rate_limits)
        figures = throughput.run_bench(recipients, workers, concurrency, latency_ms, rate_limits, timeout or 600)
    except TeamsNotifyError as exc:
        fail(str(exc), 2)
    if as_json:
        emit_json(figures)
    else:
        for name, value in figures.items():
            typer.echo(f"{name:>22}: {value}")
    if figures["lost"] or figures["duplicated"] or figures["state"] != "completed":
        raise typer.Exit(1)


def _bench_scenarios(scenario: list[str], plot: Path, peer: bool, timeout: float, as_json: bool) -> NoReturn:
    """`bench --scenario ...` and/or `--peer msgraph-sdk`: one table (or JSON document) of everything run."""
    from worker.bench import report as bench_report  # noqa: PLC0415 - heavy, and only for this command
    from worker.bench import scenarios  # noqa: PLC0415

    names: list[str] = []
    if scenario:
        try:
            names = scenarios.scenario_names(scenario)
        except ValueError as exc:
            fail(f"--scenario: {exc}", 2)
    compared = _run_peer(timeout, _stderr_line) if peer else None  # first: a missing SDK fails before the rest
    report: dict[str, Any] = {"ok": True}
    if names:
        report = scenarios.run_scenarios(names, timeout, _stderr_line, plot)
    if compared is not None:
        report["peer"] = compared
        report["ok"] = bool(report["ok"] and compared.get("ok"))
    if as_json:
        emit_json(report)
    else:
        bench_report.print_report(report)
    raise typer.Exit(0 if report["ok"] else 1)


def _stderr_line(line: str) -> None:
    typer.echo(line, err=True)


def _run_peer(timeout: float, say: Callable[[str], None]) -> dict[str, Any]:
    """`--peer msgraph-sdk`: worker.bench.peer's comparison; one line and exit 2 when it or the SDK is missing."""
    import tempfile  # noqa: PLC0415

    try:
        from worker.bench.peer import run_peer  # noqa: PLC0415 - the bench extra's SDK, only for --peer

        return run_peer(Path(tempfile.mkdtemp(prefix="teams-notify-peer-")), timeout, say)
    except ImportError as exc:
        fail(f"--peer msgraph-sdk: {exc}", 2)
