"""`teams-notify simulator`: runs the Graph + Entra simulator in the foreground and says how to point clients at it."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from worker.simulator.config import (
    DEFAULT_ERROR_STATUSES,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_TOKEN_LIFETIME,
    SimulatorConfig,
    parse_rate_limits,
)
from worker.simulator.server import Simulator, SimulatorError, serve

#: Exit code for an option value the simulator cannot use (click's usage-error code).
BAD_USAGE = 2
#: Config fields whose errors should name the command-line option instead.
_OPTION_NAMES = {
    "conflict_app_ids": "--conflict-app",
    "conflict_user_ids": "--conflict-user",
    "clients": "--client",
    "client_certificates": "--client-certificate",
    "token_lifetimes": "--tenant-token-lifetime",
    "cert_hostnames": "--cert-hostname",
    "retry_after_decimal": "--decimal-retry-after",
}


def _option_message(message: str) -> str:
    """A config error reworded to name the option (`error_rate must ...` becomes `--error-rate must ...`)."""
    field = message.split(" ", 1)[0].rstrip(":")
    if field.isidentifier() and field == field.lower():
        option = _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))
        return option + message[len(field) :]
    return message


def _pairs(items: list[str], option: str) -> dict[str, str]:
    """`ID=SECRET` items into a dict; ValueError naming the option otherwise."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise ValueError(f"{option} expects ID=SECRET (one of the values has no ID or no secret)")
        pairs[key.strip()] = value
    return pairs


def _certificates(items: list[str]) -> dict[str, list[str]]:
    """`ID=PEMFILE` items into client id to the PEM certificates registered for it; ValueError naming the option."""
    registered: dict[str, list[str]] = {}
    for item in items:
        client_id, _, path = item.partition("=")
        if not client_id.strip() or not path:
            raise ValueError("--client-certificate expects ID=PEMFILE")
        client_id = client_id.strip()
        try:
            registered.setdefault(client_id, []).append(Path(path).read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--client-certificate {client_id}: cannot read {path}: {exc}") from None
    return registered


def _lifetimes(items: list[str]) -> dict[str, int]:
    """`TENANT=SECONDS` items into a dict; ValueError naming the option."""
    try:
        return {tenant: int(seconds) for tenant, seconds in _pairs(items, "--tenant-token-lifetime").items()}
    except ValueError:
        raise ValueError("--tenant-token-lifetime expects TENANT=SECONDS with whole seconds") from None


def _statuses(text: str) -> list[int]:
    """A comma list of HTTP statuses."""
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"--error-statuses expects a comma list of HTTP statuses, got {text!r}") from None


def _print_banner(simulator: Simulator) -> None:
    """Where the simulator is and the environment a client needs, on stderr (stdout stays clean)."""
    bundle = shlex.quote(str(simulator.bundle_path))
    lines = [
        f"Graph + Entra simulator listening on {simulator.authority_host}",
        f"  Graph URL:       {simulator.graph_url}",
        f"  Authority host:  {simulator.authority_host}  (MSAL authority: {simulator.authority_host}/<tenant>)",
        f"  CA certificate:  {simulator.ca_path}",
        f"  Trust bundle:    {simulator.bundle_path}  (certifi's CAs + the simulator's)",
        f"  Control API:     {simulator.authority_host}/_simulator/stats | requests | config | reset",
        "Point clients at it with:",
        f"  export SSL_CERT_FILE={bundle}",
        f"  export REQUESTS_CA_BUNDLE={bundle}",
        f"  export TEAMS_NOTIFY_GRAPH_URL={shlex.quote(simulator.graph_url)}",
        f"  export TEAMS_NOTIFY_AUTHORITY_HOST={shlex.quote(simulator.authority_host)}",
        "Press Ctrl+C to stop.",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def simulator_command(
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to bind.")] = DEFAULT_HOST,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory for the CA, trust bundle and simulator.json (default ~/.cache/teams-notify/simulator)."
        ),
    ] = None,
    token_lifetime: Annotated[
        int, typer.Option(help="Lifetime of issued access tokens, in seconds (Entra: 3600-5400).")
    ] = DEFAULT_TOKEN_LIFETIME,
    latency_ms: Annotated[float, typer.Option(help="Mean latency added to each Graph call, in ms.")] = 0.0,
    latency_jitter_ms: Annotated[float, typer.Option(help="Latency varies uniformly by +/- this many ms.")] = 0.0,
    rate_limits: Annotated[
        str,
        typer.Option(
            help="graph (Graph's published limits), off, or overrides name=value,... with names bulk_tenant, "
            "bulk_app, single_tenant, single_app, team (requests/s) and user_minute (notifications/min); 0 = off."
        ),
    ] = "graph",
    decimal_retry_after: Annotated[
        bool,
        typer.Option(
            "--decimal-retry-after/--integer-retry-after",
            help="Retry-After on throttling as decimal seconds (1.25) or whole seconds.",
        ),
    ] = False,
    error_rate: Annotated[float, typer.Option(help="Probability (0-1) of a random Graph error.")] = 0.0,
    error_statuses: Annotated[str, typer.Option(help="Comma list of statuses random errors pick from.")] = ",".join(
        map(str, DEFAULT_ERROR_STATUSES)
    ),
    fault_retry_after: Annotated[
        float, typer.Option(help="Retry-After of random 429/503 errors, in seconds (may be decimal).")
    ] = 1.0,
    drop_rate: Annotated[
        float, typer.Option(help="Probability (0-1) that a Graph call's connection is dropped without a response.")
    ] = 0.0,
    conflict_app: Annotated[
        list[str] | None, typer.Option(help="App (client) id whose sends get 409 Conflict. Repeatable.")
    ] = None,
    conflict_user: Annotated[
        list[str] | None, typer.Option(help="User id whose notifications get 409 Conflict. Repeatable.")
    ] = None,
    client: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ID=SECRET", help="Only accept these clients (default: any id with a secret). Repeatable."
        ),
    ] = None,
    client_certificate: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ID=PEMFILE",
            help="Register this certificate for the client: its signed assertions are accepted. Repeatable.",
        ),
    ] = None,
    tenant_token_lifetime: Annotated[
        list[str] | None,
        typer.Option(metavar="TENANT=SECONDS", help="Lifetime of this tenant's tokens. Repeatable."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for random latency, errors and drops.")] = None,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = False,
    cert_hostname: Annotated[
        list[str] | None, typer.Option(help="Extra host name for the server certificate. Repeatable.")
    ] = None,
) -> None:
    """Run a local Graph + Entra simulator (HTTPS, its own CA) with latency, throttling and fault injection."""
    try:
        config = SimulatorConfig(
            host=host,
            port=port,
            state_dir=state_dir,
            token_lifetime=token_lifetime,
            latency_ms=latency_ms,
            latency_jitter_ms=latency_jitter_ms,
            rate_limits=parse_rate_limits(rate_limits),
            retry_after_decimal=decimal_retry_after,
            error_rate=error_rate,
            error_statuses=_statuses(error_statuses),
            fault_retry_after=fault_retry_after,
            drop_rate=drop_rate,
            conflict_app_ids=frozenset(conflict_app or ()),
            conflict_user_ids=frozenset(conflict_user or ()),
            clients=_pairs(client or [], "--client"),
            client_certificates=_certificates(client_certificate or []),
            token_lifetimes=_lifetimes(tenant_token_lifetime or []),
            seed=seed,
            access_log=access_log,
            cert_hostnames=tuple(cert_hostname or ()),
        )
    except ValueError as exc:
        print(f"Error: {_option_message(str(exc))}", file=sys.stderr)
        raise typer.Exit(BAD_USAGE) from None
    if access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access_logger = logging.getLogger("uvicorn.access")
        access_logger.addHandler(handler)
        access_logger.setLevel(logging.INFO)
    try:
        serve(config, on_ready=_print_banner)
    except SimulatorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print("Simulator stopped.", file=sys.stderr)
