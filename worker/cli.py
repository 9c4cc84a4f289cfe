"""`teams-notify`: the fleet's command line (worker, send, status, dead letters, simulator, demo)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from producers import keys
from producers.errors import TeamsNotifyError
from producers.notifier import Notifier
from worker import admin, metricsdir, observe
from worker.bench.command import bench
from worker.console import emit_json, fail, reported, settings
from worker.deadlettercommands import dead_letters_app

app = typer.Typer(
    name="teams-notify",
    help="Delivers Microsoft Teams activity-feed notifications through Microsoft Graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(dead_letters_app, name="dead-letters")

#: Celery worker options teams-notify sets unless the operator gives them: I/O-bound sends share threads.
WORKER_DEFAULTS = {("-P", "--pool"): "threads", ("-c", "--concurrency"): "8"}


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


app.command()(bench)  # worker/bench/command.py: after `demo`, before `simulator`, as `--help` lists them


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
