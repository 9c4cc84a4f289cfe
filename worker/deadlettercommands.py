"""`teams-notify dead-letters ...`: list, show, replay, discard and export the requests that need a person."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from producers.errors import TeamsNotifyError
from worker import admin
from worker.console import emit_json, fail, reported, settings

dead_letters_app = typer.Typer(help="Inspect the requests that need a person.", no_args_is_help=True)


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
