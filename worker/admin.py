"""What operators ask of the fleet: status, pause, resume, drain, dead letters. Shared by the CLI and tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from producers import keys
from producers.errors import BrokerUnavailable, UnknownJob
from producers.notifier import Notifier, connect, redacted
from worker.config import Settings
from worker.deadletters import DeadLetter, DeadLetterStore

#: Seconds to wait for workers to answer a ping.
PING_TIMEOUT = 1.0


def job_status(settings: Settings, job_id: str) -> dict[str, Any]:
    """The contract's job status document."""
    notifier = Notifier(settings.redis_url)
    try:
        return notifier.status(job_id)
    finally:
        notifier.close()


@contextmanager
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    """A Redis client for one admin operation; connection failures become BrokerUnavailable."""
    client = connect(settings.redis_url)
    try:
        yield client
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {redacted(settings.redis_url)}: {exc}") from None
    finally:
        client.close()


def _control() -> Any:
    from worker.app import app  # noqa: PLC0415 - the Celery app only for commands that broadcast

    return app.control


def fleet_status(settings: Settings) -> dict[str, Any]:
    """Queue depths, workers answering a ping, dead letters waiting, paused or not."""
    with redis_client(settings) as client:
        queues = {queue: int(client.llen(queue)) for queue in (keys.QUEUE, keys.ADMIN_QUEUE)}
        in_flight = int(client.hlen(keys.KOMBU_UNACKED))
        dead = DeadLetterStore(client).count()
        jobs = int(client.zcard(keys.jobs_index()))
        paused = bool(client.exists(keys.paused()))
    replies = _control().ping(timeout=PING_TIMEOUT) or []
    workers = sorted(name for reply in replies for name in reply)
    return {
        "queues": queues,
        "in_flight": in_flight,
        "workers": workers,
        "dead_letters": dead,
        "jobs": jobs,
        "paused": paused,
    }


def pause(settings: Settings) -> dict[str, Any]:
    """The fleet stops taking jobs: workers stop consuming the queue; queued jobs are kept."""
    with redis_client(settings) as client:
        client.set(keys.paused(), "1")
    _control().cancel_consumer(keys.QUEUE, reply=False)
    return {"paused": True}


def resume(settings: Settings) -> dict[str, Any]:
    """The fleet takes jobs again."""
    with redis_client(settings) as client:
        client.delete(keys.paused())
    _control().add_consumer(keys.QUEUE, reply=False)
    return {"paused": False}


def backlog(settings: Settings) -> dict[str, int]:
    """What is left to do: messages queued, and messages in flight (running or scheduled for a retry)."""
    with redis_client(settings) as client:
        return {"queued": int(client.llen(keys.QUEUE)), "in_flight": int(client.hlen(keys.KOMBU_UNACKED))}


def drain(
    settings: Settings,
    timeout: float,
    report: Callable[[dict[str, int]], None],
    interval: float = 0.5,
) -> bool:
    """Waits until nothing is queued or in flight, reporting progress; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = backlog(settings)
        report(left)
        if left["queued"] == 0 and left["in_flight"] == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    """Every dead letter as JSON-ready dicts, oldest first."""
    with redis_client(settings) as client:
        return [letter.model_dump(mode="json") for letter in DeadLetterStore(client).list()]


def _letters(store: DeadLetterStore, letter_id: str | None) -> list[DeadLetter]:
    if letter_id is None:
        return store.list()
    letter = store.get(letter_id)
    if letter is None:
        raise UnknownJob(f"no dead letter with id {letter_id!r}")
    return [letter]


def dead_letter(settings: Settings, letter_id: str) -> dict[str, Any]:
    """One dead letter; UnknownJob when there is none with that id."""
    with redis_client(settings) as client:
        return _letters(DeadLetterStore(client), letter_id)[0].model_dump(mode="json")


def replay(settings: Settings, letter_id: str | None, teams_app_id: str | None = None) -> list[str]:
    """Sends one dead letter (or all, with None) again; returns the ids replayed."""
    with redis_client(settings) as client:
        store = DeadLetterStore(client)
        return [letter.id for letter in _letters(store, letter_id) if store.replay(letter, teams_app_id)]


def discard(settings: Settings, letter_id: str | None) -> list[str]:
    """Drops one dead letter (or all, with None); returns the ids dropped."""
    with redis_client(settings) as client:
        store = DeadLetterStore(client)
        return [letter.id for letter in _letters(store, letter_id) if store.discard(letter.id)]


def export(settings: Settings, path: Path) -> int:
    """Writes every dead letter to a JSON Lines file; returns how many."""
    letters = dead_letters(settings)
    with path.open("w", encoding="utf-8") as out:
        for letter in letters:
            out.write(json.dumps(letter) + "\n")
    return len(letters)


def print_status(document: dict[str, Any]) -> None:
    """A status document for a person."""
    console = Console()
    if "job_id" in document:
        table = Table(title=f"job {document['job_id']}: {document['state']}")
        for column in ("", "total", "sent", "dead-lettered", "pending"):
            table.add_column(column, justify="right")
        for name in ("requests", "recipients"):
            counts = document.get(name)
            if counts:
                row = [counts["total"], counts["sent"], counts["dead_lettered"], counts["pending"]]
                table.add_row(name, *map(str, row))
        console.print(table)
        return
    for queue, depth in document["queues"].items():
        console.print(f"queue {queue}: {depth} waiting")
    console.print(f"in flight: {document['in_flight']}")
    console.print(f"workers: {', '.join(document['workers']) or 'none answering'}")
    console.print(f"dead letters: {document['dead_letters']}")
    console.print(f"paused: {'yes' if document['paused'] else 'no'}")


def print_dead_letters(letters: list[dict[str, Any]]) -> None:
    """Dead letters as a table."""
    table = Table(title=f"{len(letters)} dead letters")
    for column in ("id", "job", "reason", "status", "error", "attempts", "created"):
        table.add_column(column)
    for letter in letters:
        error = f"{letter['error']['code']}: {letter['error']['message']}"
        table.add_row(
            letter["id"],
            letter["job_id"],
            letter["reason"],
            str(letter["status"]),
            error[:80],
            str(letter["attempts"]),
            letter["created_at"],
        )
    Console().print(table)
