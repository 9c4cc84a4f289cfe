"""What every `teams-notify` command shares: its settings, one-line errors with exit codes, JSON on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from producers.errors import TeamsNotifyError
from worker import config, observe


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
