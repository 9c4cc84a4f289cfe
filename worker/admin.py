"""What operators ask of the fleet: status, pause, resume, drain, dead letters. Shared by the CLI and tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import redis
from kombu.exceptions import KombuError
from rich.console import Console
from rich.table import Table

from producers import keys
from producers.connection import connect, redacted
from producers.errors import BrokerUnavailable, UnknownJob
from producers.notifier import Notifier
from worker import broker
from worker.config import Settings
from worker.deadletters import DeadLetter, DeadLetterStore
from worker.fleet import Fleet
from worker.lanes import RATE_WINDOW, LaneState, LaneStore

#: Seconds to wait for workers to answer a ping.
PING_TIMEOUT = 1.0


def job_status(settings: Settings, job_id: str) -> dict[str, Any]:
    """The contract's job status document."""
    with closing(Notifier(settings.redis_url)) as notifier:
        return notifier.status(job_id)


def cancel(settings: Settings, job_id: str) -> dict[str, Any]:
    """Cancels a job (see `Notifier.cancel`); returns its status."""
    with closing(Notifier(settings.redis_url)) as notifier:
        return notifier.cancel(job_id)


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


def lane_document(state: LaneState, settings: Settings) -> dict[str, Any]:
    """One lane for `teams-notify status`: its counts, its rate against its limit, and any hold."""
    limits = settings.rate_limits
    limit = (limits["bulk_tenant" if state.bulk else "single_tenant"]) if limits else None
    held = max(state.held_until - state.now, 0.0)
    return {
        "lane": state.lane,
        "tenant": state.tenant or settings.tenant_id,
        "class": "bulk" if state.bulk else "single",
        "waiting": state.waiting,
        "delayed": state.delayed,
        "handed": state.handed,
        "in_flight": state.in_flight,
        "rate": round(state.recent / RATE_WINDOW, 2),
        "limit": round(limit * state.pace, 2) if limit else None,
        "published_limit": limit,
        "throttled": held > 0 or state.pace < 1.0,
        "held_for": round(held, 2),
    }


def _lanes(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    store = LaneStore(client)
    return [lane_document(state, settings) for state in store.states(store.lane_ids())]


def _queue_depths(settings: Settings) -> dict[str, int | None]:
    """The fleet's queues in the broker; BrokerUnavailable when the broker cannot be asked."""
    try:
        return broker.queue_depths(settings)
    except (redis.RedisError, OSError, KombuError) as exc:
        raise BrokerUnavailable(f"cannot reach the broker at {redacted(settings.broker)}: {exc}") from None


def fleet_status(settings: Settings) -> dict[str, Any]:
    """Broker and store, queue depths, lanes, workers answering a ping, dead letters waiting, paused or not."""
    queues = _queue_depths(settings)
    with redis_client(settings) as client:
        lanes = _lanes(client, settings)
        dead = DeadLetterStore(client).count()
        jobs = int(client.zcard(keys.jobs_index()))
        paused = bool(client.exists(keys.paused()))
        slots = Fleet(client).slots()
        leader = client.get(keys.scheduler_lock()) is not None
    replies = _control().ping(timeout=PING_TIMEOUT) or []
    workers = sorted(name for reply in replies for name in reply)
    totals = {name: sum(lane[name] for lane in lanes) for name in ("waiting", "delayed", "handed", "in_flight")}
    return {
        **broker.layout(settings),
        "queues": queues,
        **totals,
        "lanes": lanes,
        "workers": workers,
        "slots": sum(slots.values()),
        "scheduler": "leading" if leader else "no leader",
        "dead_letters": dead,
        "jobs": jobs,
        "paused": paused,
    }


def pause(settings: Settings) -> dict[str, Any]:
    """The fleet stops taking jobs: the scheduler hands nothing out; requests in flight finish; all else waits."""
    with redis_client(settings) as client:
        client.set(keys.paused(), "1")
    return {"paused": True}


def resume(settings: Settings) -> dict[str, Any]:
    """The fleet takes jobs again."""
    with redis_client(settings) as client:
        client.delete(keys.paused())
    return {"paused": False}


def backlog(settings: Settings) -> dict[str, int]:
    """What is left to do, from Redis' own state: requests waiting, delayed, handed and in flight, and the
    messages in the broker's queue."""
    with redis_client(settings) as client:
        lanes = _lanes(client, settings)
        left = {name: sum(lane[name] for lane in lanes) for name in ("waiting", "delayed", "handed", "in_flight")}
    return {**left, "queued": _queue_depths(settings)[keys.QUEUE] or 0}


def drain(
    settings: Settings,
    timeout: float,
    report: Callable[[dict[str, int]], None],
    interval: float = 0.5,
) -> bool:
    """Waits until nothing is waiting, delayed, handed, in flight or queued, reporting progress; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = backlog(settings)
        report(left)
        if not any(left.values()):
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
        scheduled = f" (scheduled for {document['scheduled_for']})" if document.get("scheduled_for") else ""
        table = Table(title=f"job {document['job_id']}: {document['state']}{scheduled}")
        for column in ("", "total", "sent", "dead-lettered", "cancelled", "pending"):
            table.add_column(column, justify="right")
        for name in ("requests", "recipients"):
            counts = document.get(name)
            if counts:
                row = [counts[k] for k in ("total", "sent", "dead_lettered", "cancelled", "pending")]
                table.add_row(name, *map(str, row))
        console.print(table)
        return
    store = document["store"]
    master = f", master {store['master'] or 'unknown'}" if "master" in store else ""
    console.print(f"broker: {document['broker']['kind']} at {document['broker']['url']}")
    console.print(f"store: {store['kind']} at {store['url']}{master}")
    for queue, depth in document["queues"].items():
        console.print(f"queue {queue}: {'not declared yet' if depth is None else f'{depth} message(s)'}")
    lanes = Table(title=f"lanes (scheduler: {document['scheduler']})")
    for column in ("tenant", "class", "waiting", "delayed", "handed", "in flight", "rate/s", "limit/s", "throttled"):
        lanes.add_column(column, justify="left" if column in ("tenant", "class") else "right")
    for lane in document["lanes"]:
        throttled = f"held {lane['held_for']}s" if lane["held_for"] else ("slowed" if lane["throttled"] else "no")
        counts = [lane[name] for name in ("waiting", "delayed", "handed", "in_flight", "rate", "limit")]
        lanes.add_row(str(lane["tenant"] or "default"), lane["class"], *map(str, counts), throttled)
    console.print(lanes)
    console.print(f"workers: {', '.join(document['workers']) or 'none answering'} ({document['slots']} slots)")
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
