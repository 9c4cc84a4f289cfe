"""The `teams-notify` console script: checks the subcommand's install extra, then runs the CLI.

Standard library only, so that a base install (`pip install teams-notify`: the producers, redis and
pydantic) still has a console script that says in one line which extra to install instead of a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from importlib.util import find_spec

#: The program's name in messages.
PROGRAM = "teams-notify"
#: What `sys.exit` gets when an extra is missing: a usage error, like a bad option.
MISSING_EXTRA = 2

#: The modules each install extra brings, as imported; each extra's list holds only its own additions.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "worker": (
        "celery",
        "kombu",
        "msal",
        "requests",
        "httpx",
        "cryptography",
        "tenacity",
        "prometheus_client",
        "typer",
        "rich",
    ),
    "simulator": ("starlette", "uvicorn", "trustme", "jwt", "certifi"),
    "bench": ("matplotlib", "psutil", "msgraph", "msgraph_core", "kiota_authentication_azure", "azure.identity"),
}
#: What an extra includes besides its own modules (pyproject.toml's self-references).
EXTRA_INCLUDES: dict[str, tuple[str, ...]] = {
    "worker": (),
    "simulator": ("worker",),
    "bench": ("worker", "simulator"),
}
#: The extras a subcommand names in its message; every other subcommand (and `--help`) needs the worker's.
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "simulator": ("simulator",),
    "bench": ("bench",),
    "demo": ("worker", "simulator"),
}
DEFAULT_EXTRAS = ("worker",)


def subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand of a command line (its first word that is not an option), or None."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def extras_for(command: str | None) -> tuple[str, ...]:
    """The install extras a subcommand names when one of its modules is missing."""
    return COMMAND_EXTRAS.get(command or "", DEFAULT_EXTRAS)


def modules_of(extras: Sequence[str]) -> list[str]:
    """Every module the extras bring, those of the extras they include first, each once."""
    seen: dict[str, None] = {}
    for extra in extras:
        for name in (*EXTRA_INCLUDES[extra], extra):
            seen.update(dict.fromkeys(EXTRA_MODULES[name]))
    return list(seen)


def importable(module: str) -> bool:
    """Whether a module can be imported, without importing it (a dotted name imports its parents)."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra_message(command: str | None) -> str | None:
    """One line saying which extra to install when a module the subcommand needs is missing, else None."""
    extras = extras_for(command)
    if all(importable(module) for module in modules_of(extras)):
        return None
    who = f"{PROGRAM} {command}" if command else PROGRAM
    names = " and ".join(extras)
    noun = "extras" if len(extras) > 1 else "extra"
    return f"{who} needs the {names} {noun}: pip install '{PROGRAM}[{','.join(extras)}]'"


#: prometheus-client's multiprocess directory: it must exist before prometheus-client is imported.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiproc_dir_message(environ: Mapping[str, str]) -> str | None:
    """One line when PROMETHEUS_MULTIPROC_DIR names no directory (prometheus-client would fail at import with
    a traceback), else None."""
    path = environ.get(MULTIPROC_DIR)
    if path is None or os.path.isdir(path):
        return None
    return f"{PROGRAM}: error: {MULTIPROC_DIR}={path!r} is not a directory: create it, or unset it"


def main() -> None:
    """The console script: one line and exit code 2 when the subcommand's extra is missing or the metrics
    directory does not exist, else the CLI."""
    message = missing_extra_message(subcommand(sys.argv[1:])) or multiproc_dir_message(os.environ)
    if message is not None:
        print(message, file=sys.stderr)
        sys.exit(MISSING_EXTRA)
    from worker import cli  # noqa: PLC0415 - only once the extras it imports are known to be installed

    cli.main()
