"""`teams-notify`: the fleet's command line (worker, send, status, dead letters, simulator, demo)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from producers import keys
from producers.errors import TeamsNotifyError
from producers.notifier import Notifier
from worker import admin, config, metricsdir, observe

app = typer.Typer(
    name="teams-notify",
    help="Delivers Microsoft Teams activity-feed notifications through Microsoft Graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dead_letters_app = typer.Typer(help="Inspect the requests that need a person.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")

#: Celery worker options teams-notify sets unless the operator gives them: I/O-bound sends share threads.
WORKER_DEFAULTS = {("-P", "--pool"): "threads", ("-c", "--concurrency"): "8"}


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and the exit code; never a traceback."""
    typer.echo(f"teams-notify: error: {message}", err=True)
    raise typer.Exit(code)


def settings() -> config.Settings:
    """The settings, or one clear line naming the bad variable and exit code 2."""
    try:
        loaded = config.load()
    except TeamsNotifyError as exc:
        fail(str(exc), 2)
    observe.configure(loaded.log_format, loaded.log_level)
    return loaded


@contextmanager
def reported() -> Iterator[None]:
    """Runs an operation; a TeamsNotifyError becomes one line on stderr and exit code 1."""
    try:
        yield
    except TeamsNotifyError as exc:
        fail(str(exc))


def emit_json(document: Any) -> None:
    """One JSON document on stdout and nothing else."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker of the fleet (extra options go to `celery worker`, e.g. -c 16)."""
    current = settings()
    try:
        current.require_credentials()
    except TeamsNotifyError as exc:
        fail(str(exc), 2)
    # With JSON logs every line must be JSON: no banner (the same facts are logged at start).
    quiet = ["--quiet"] if observe.uses_json(current.log_format) else []
    argv = [*quiet, "worker", "-Q", f"{keys.QUEUE},{keys.ADMIN_QUEUE}", *ctx.args]
    for flags, value in WORKER_DEFAULTS.items():
        if not any(arg == flag or arg.startswith(flag + "=") for arg in ctx.args for flag in flags):
            argv += [flags[1], value]
    if metricsdir.needs_private_dir(current.metrics_port, argv):
        # A process pool exports its children's metrics through files: prometheus_client must be imported
        # with PROMETHEUS_MULTIPROC_DIR set, so the worker starts again (same pid) with a private one.
        try:
            metricsdir.reexec_with_private_dir(current.metrics_port)
        except OSError as exc:
            fail(f"cannot start the worker with a metrics directory for its pool: {exc}")
    from worker.app import app as celery_app  # noqa: PLC0415 - the app reads settings already checked above

    with observe.worker_metrics(current):
        celery_app.worker_main(argv)


@app.command()
def send(
    body: Annotated[str, typer.Option("--body", help="JSON file with the Graph request body, - for stdin")],
    user: Annotated[str | None, typer.Option("--user", help="notify this user (id or UPN)")] = None,
    chat: Annotated[str | None, typer.Option("--chat", help="notify the members of this chat")] = None,
    team: Annotated[str | None, typer.Option("--team", help="notify in the scope of this team")] = None,
    recipients: Annotated[bool, typer.Option("--recipients", help="bulk: the body's recipients")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", help="tenant id (default TEAMS_NOTIFY_TENANT_ID)")] = None,
    at: Annotated[str | None, typer.Option("--at", help="send at this time (ISO 8601 with a time zone)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help='print {"job_id": ...}')] = False,
) -> None:
    """Enqueue a job from a Graph request body and print its id."""
    chosen = [name for name, value in (("--user", user), ("--chat", chat), ("--team", team)) if value is not None]
    if recipients:
        chosen.append("--recipients")
    if len(chosen) != 1:
        fail("give exactly one of --user ID, --chat ID, --team ID, --recipients", 2)
    try:
        text = sys.stdin.read() if body == "-" else Path(body).read_text(encoding="utf-8")
        document = json.loads(text)
    except OSError as exc:
        fail(f"cannot read the body: {exc}")
    except ValueError as exc:
        fail(f"the body is not JSON: {exc}")
    current = settings()
    with reported():
        notifier = Notifier(current.redis_url, manifest=current.app_manifest)
        options: dict[str, Any] = {"tenant_id": tenant}
        if at is not None:
            options["send_at"] = _time(at)
        if user is not None:
            job_id = notifier.notify_user(user, document, **options)
        elif chat is not None:
            job_id = notifier.notify_chat(chat, document, **options)
        elif team is not None:
            job_id = notifier.notify_team(team, document, **options)
        else:
            job_id = notifier.notify_recipients(document, **options)
    if as_json:
        emit_json({"job_id": job_id})
    else:
        typer.echo(job_id)


@app.command()
def status(
    job_id: Annotated[str | None, typer.Argument(help="a job id; without it, the fleet")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """A job's status; without an id, the fleet: queue depth, workers, dead letters."""
    current = settings()
    with reported():
        document = admin.job_status(current, job_id) if job_id else admin.fleet_status(current)
    if as_json:
        emit_json(document)
    else:
        admin.print_status(document)


def _time(text: str) -> datetime:
    """An ISO 8601 time for `--at`; a malformed one is a bad option (exit 2)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--at {text!r} is not an ISO 8601 time such as 2026-12-24T09:00:00+01:00", 2)


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(help="the job to cancel")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Cancel a job: what is not yet handed to Graph is never sent; what is in flight finishes."""
    current = settings()
    with reported():
        document = admin.cancel(current, job_id)
    if as_json:
        emit_json(document)
    else:
        admin.print_status(document)


@dead_letters_app.command("list")
def dead_letters_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Every dead letter, oldest first."""
    with reported():
        letters = admin.dead_letters(settings())
    if as_json:
        emit_json(letters)
    else:
        admin.print_dead_letters(letters)


@dead_letters_app.command("show")
def dead_letters_show(letter_id: Annotated[str, typer.Argument(help="the dead letter's id")]) -> None:
    """One dead letter, whole, as JSON."""
    with reported():
        letter = admin.dead_letter(settings(), letter_id)
    emit_json(letter)


@dead_letters_app.command("replay")
def dead_letters_replay(
    letter_id: Annotated[str | None, typer.Argument(help="the dead letter's id")] = None,
    every: Annotated[bool, typer.Option("--all", help="replay every dead letter")] = False,
    teams_app_id: Annotated[str | None, typer.Option("--teams-app-id", help="add this teamsAppId")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Send dead-lettered requests again (with a teamsAppId added, to settle a 409)."""
    if (letter_id is None) == (not every):
        fail("give a dead letter's ID or --all", 2)
    with reported():
        replayed = admin.replay(settings(), letter_id, teams_app_id)
    if as_json:
        emit_json({"replayed": replayed})
    else:
        typer.echo(f"replayed {len(replayed)} dead letter(s)")


@dead_letters_app.command("discard")
def dead_letters_discard(
    letter_id: Annotated[str | None, typer.Argument(help="the dead letter's id")] = None,
    every: Annotated[bool, typer.Option("--all", help="discard every dead letter")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Drop dead letters for good (their requests stay dead-lettered in their jobs)."""
    if (letter_id is None) == (not every):
        fail("give a dead letter's ID or --all", 2)
    with reported():
        discarded = admin.discard(settings(), letter_id)
    if as_json:
        emit_json({"discarded": discarded})
    else:
        typer.echo(f"discarded {len(discarded)} dead letter(s)")


@dead_letters_app.command("export")
def dead_letters_export(file: Annotated[Path, typer.Argument(help="the JSON Lines file to write")]) -> None:
    """Write every dead letter to a JSON Lines file."""
    try:
        count = admin.export(settings(), file)
    except OSError as exc:
        fail(f"cannot write {file}: {exc}")
    except TeamsNotifyError as exc:
        fail(str(exc))
    typer.echo(f"wrote {count} dead letter(s) to {file}", err=True)


@app.command()
def pause(as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False) -> None:
    """The fleet stops taking jobs; queued jobs are kept."""
    with reported():
        document = admin.pause(settings())
    emit_json(document) if as_json else typer.echo("paused: queued jobs wait until `teams-notify resume`")


@app.command()
def resume(as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False) -> None:
    """The fleet takes jobs again."""
    with reported():
        document = admin.resume(settings())
    emit_json(document) if as_json else typer.echo("resumed")


@app.command()
def drain(
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait at most")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Wait, with progress, until nothing is waiting, delayed, handed, in flight or queued; exit 1 on timeout."""

    def report(left: dict[str, int]) -> None:
        parts = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in left.items())
        typer.echo(parts, err=True)

    with reported():
        drained = admin.drain(settings(), timeout, report)
    if as_json:
        emit_json({"drained": drained, **admin.backlog(settings())})
    if not drained:
        fail(f"not drained after {timeout:g}s")
    if not as_json:
        typer.echo("drained")


@app.command()
def demo(
    recipients: Annotated[int, typer.Option("--recipients", help="users in the bulk job")] = 1000,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for delivery")] = 180,
) -> None:
    """The main job, end to end: a local Redis, the simulator, a worker, a bulk job, a report."""
    from worker.demo import run_demo  # noqa: PLC0415 - heavy, and only for this command

    with reported():
        code = run_demo(recipients=recipients, timeout=timeout)
    raise typer.Exit(code)


@app.command()
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
            help="instead of the throughput run: raw, tenant1, tenants2, tenants10, singles, kill-worker, "
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


def _register_simulator() -> None:
    """Adds `simulator` when its extra is installed; without it the launcher (worker/launcher.py) names the extra."""
    try:
        from worker.simulator.command import simulator_command  # noqa: PLC0415 - kept apart from production paths
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in {"worker", "producers"}:
            raise
        return

    app.command("simulator", help="A local Graph + Entra simulator (HTTPS, its own CA).")(simulator_command)


_register_simulator()


def main() -> None:
    """The console script."""
    app()
