"""The whole pipeline: Notifier → Redis → `teams-notify worker` processes → the simulator over HTTPS."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Notifier
from tests.integration.conftest import SimulatorControl, wait_until_ended
from worker.deadletters import DeadLetterStore

pytestmark = pytest.mark.integration

EXAMPLES = json.loads((Path(__file__).parents[1] / "fixtures" / "reference_examples.json").read_text())
TOPIC = {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/app"}
AAD = "microsoft.graph.aadUserNotificationRecipient"


def bulk_body(users: list[str]) -> dict[str, Any]:
    return {
        "topic": TOPIC,
        "activityType": "pendingFinanceApprovalRequests",
        "previewText": {"content": "Internal spending team has a pending finance approval requests"},
        "templateParameters": [{"name": "pendingRequestCount", "value": "5"}],
        "recipients": [{"@odata.type": AAD, "userId": u} for u in users],
    }


def users(count: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i}@contoso.com" for i in range(count)]


def test_a_10000_recipient_job_is_delivered_by_two_workers_exactly_once(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl
) -> None:
    everyone = users(10_000)
    body = bulk_body(everyone)
    start_workers(2)

    job_id = notifier.notify_recipients(body)
    [status] = wait_until_ended(notifier, [job_id])

    assert status == {
        "job_id": job_id,
        "state": "completed",
        "requests": {"total": 100, "sent": 100, "dead_lettered": 0, "cancelled": 0, "pending": 0},
        "recipients": {"total": 10_000, "sent": 10_000, "dead_lettered": 0, "cancelled": 0, "pending": 0},
    }
    accepted = graph.requests()
    assert len(accepted) == 100
    assert all(r["endpoint"] == "bulk" and len(r["body"]["recipients"]) <= 100 for r in accepted)
    delivered = Counter(r["userId"] for request in accepted for r in request["body"]["recipients"])
    assert set(delivered) == set(everyone)
    assert set(delivered.values()) == {1}
    without_recipients = {k: v for k, v in body.items() if k != "recipients"}
    assert all({k: v for k, v in r["body"].items() if k != "recipients"} == without_recipients for r in accepted)


def test_user_chat_and_team_jobs_are_each_delivered_once(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl
) -> None:
    base = {k: v for k, v in bulk_body([]).items() if k != "recipients"}
    recipient = {"@odata.type": AAD, "userId": "569363e2-4e49-4661-87f2-16f245c5d66a"}
    chat = "19:d65713bc498c4a428c71ef9353e6ce20@thread.v2"
    team = "e8bece96-d393-4b9b-b8da-69cedef1a7e7"
    start_workers(1)

    jobs = [
        notifier.notify_user("jacob@contoso.com", base),
        notifier.notify_chat(chat, {**base, "recipient": recipient}),
        notifier.notify_team(team, {**base, "recipient": recipient}),
    ]
    statuses = wait_until_ended(notifier, jobs)

    assert [s["state"] for s in statuses] == ["completed"] * 3
    one = {"total": 1, "sent": 1, "dead_lettered": 0, "cancelled": 0, "pending": 0}
    assert all(s["requests"] == one for s in statuses)
    assert all(s["recipients"] is None for s in statuses)
    accepted = sorted(graph.requests(), key=lambda r: r["endpoint"])
    assert [(r["endpoint"], r["target"]) for r in accepted] == [
        ("chat", chat),
        ("team", team),
        ("user", "jacob@contoso.com"),
    ]


def test_every_v1_example_body_of_the_reference_docs_is_delivered_verbatim(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl
) -> None:
    examples = [e for e in EXAMPLES if e["v1"]]
    start_workers(1)
    send = {
        "user": notifier.notify_user,
        "chat": notifier.notify_chat,
        "team": notifier.notify_team,
    }
    jobs = []
    for example in examples:
        if example["endpoint"] == "recipients":
            jobs.append(notifier.notify_recipients(example["body"]))
        else:
            jobs.append(send[example["endpoint"]](example["target"], example["body"]))

    statuses = wait_until_ended(notifier, jobs)

    assert [s["state"] for s in statuses] == ["completed"] * len(examples)
    received = [r["body"] for r in graph.requests()]
    for example in examples:
        assert example["body"] in received, example["source"]


def test_a_409_is_dead_lettered_with_graphs_message_and_the_rest_delivered(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl, redis_url: str
) -> None:
    everyone = users(250)
    graph.configure(conflict_user_ids=[everyone[150]])
    start_workers(1)

    job_id = notifier.notify_recipients(bulk_body(everyone))
    [status] = wait_until_ended(notifier, [job_id])

    assert status["state"] == "completed_with_errors"
    assert status["requests"] == {"total": 3, "sent": 2, "dead_lettered": 1, "cancelled": 0, "pending": 0}
    assert status["recipients"] == {"total": 250, "sent": 150, "dead_lettered": 100, "cancelled": 0, "pending": 0}
    letters = DeadLetterStore(redis.Redis.from_url(redis_url, decode_responses=True)).list()
    [letter] = letters
    assert letter.status == 409
    assert letter.reason == "conflict"
    assert letter.error.message.startswith("Found multiple applications with the same AAD App ID")
    assert letter.request.path == "/teamwork/sendActivityNotificationToRecipients"
    assert [r["userId"] for r in letter.request.body["recipients"]] == everyone[100:200]


def test_transient_faults_and_dropped_connections_still_deliver_each_recipient_once(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl
) -> None:
    everyone = users(3_000)
    graph.configure(error_rate=0.3, fault_retry_after=0.2, drop_rate=0.05)
    start_workers(2)

    job_id = notifier.notify_recipients(bulk_body(everyone))
    [status] = wait_until_ended(notifier, [job_id], timeout=180)

    assert status["state"] == "completed"
    delivered = graph.delivered()
    assert set(delivered) == set(everyone)
    assert set(delivered.values()) == {1}
    answers = graph.stats()["responses"]
    assert sum(n for code, n in answers.items() if code not in ("202", "204")) > 0


def test_the_fleet_paces_itself_at_the_limits_graph_enforces_and_is_never_throttled(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, graph: SimulatorControl
) -> None:
    limits = "bulk_tenant=20,bulk_app=40"
    graph.configure(rate_limits={"bulk_tenant": 20, "bulk_app": 40})
    worker_env["TEAMS_NOTIFY_RATE_LIMITS"] = limits
    start_workers(2)

    started = time.monotonic()
    job_id = notifier.notify_recipients(bulk_body(users(6_000)))
    [status] = wait_until_ended(notifier, [job_id])
    took = time.monotonic() - started

    assert status["state"] == "completed"
    assert graph.stats()["responses"].get("429", 0) == 0
    assert took >= 59 / 20  # 60 requests at 20/s: the first at once, the last 2.95 s later at the earliest
