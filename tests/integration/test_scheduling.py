"""What backend apps ask next, end to end: send at a time, cancel a job, be called back when it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Notifier
from tests.integration import callback_app
from tests.integration.conftest import SimulatorControl, wait_until_ended
from tests.integration.test_cli import cli
from tests.integration.test_pipeline import bulk_body, users

pytestmark = pytest.mark.integration

BACKEND_WORKER = [sys.executable, "-m", "celery", "-A", "tests.integration.callback_app", "worker", "-P", "solo"]


def single_body() -> dict[str, Any]:
    return {k: v for k, v in bulk_body([]).items() if k != "recipients"}


def received_at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["received_at"].replace("Z", "+00:00")).timestamp()


def test_a_job_sent_at_a_time_reaches_graph_within_a_second_after_it_and_never_before_even_if_a_worker_dies(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl
) -> None:
    doomed, _ = start_workers(2)
    send_at = time.time() + 5
    bulk = notifier.notify_recipients(bulk_body(users(200)), send_at=send_at)
    single = notifier.notify_user("jacob@contoso.com", single_body(), send_at=datetime.fromtimestamp(send_at, UTC))
    assert notifier.status(bulk)["state"] == "scheduled"
    assert notifier.status(single)["scheduled_for"] == datetime.fromtimestamp(send_at, UTC).isoformat()

    time.sleep(1.5)
    doomed.signal(signal.SIGKILL)  # perhaps the scheduler's leader: another takes over
    time.sleep(max(send_at - time.time() - 0.3, 0))
    assert graph.requests() == []  # nothing before its time...
    statuses = wait_until_ended(notifier, [bulk, single], timeout=30)

    assert [s["state"] for s in statuses] == ["completed", "completed"]
    arrivals = [received_at(r) for r in graph.requests()]
    assert len(arrivals) == 3  # ...and everything after it
    assert all(send_at <= at <= send_at + 1.0 for at in arrivals), [at - send_at for at in arrivals]


def test_a_time_in_the_past_sends_now_and_a_naive_or_too_distant_time_is_refused(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl, redis_url: str
) -> None:
    start_workers(1)
    with pytest.raises(ValueError, match="send_at"):
        notifier.notify_user("jacob@contoso.com", single_body(), send_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="send_at"):
        notifier.notify_user("jacob@contoso.com", single_body(), send_at=time.time() + 36 * 86400)
    assert redis.Redis.from_url(redis_url).keys("teams-notify:job:*") == []

    job_id = notifier.notify_user("jacob@contoso.com", single_body(), send_at=time.time() - 3600)
    [status] = wait_until_ended(notifier, [job_id], timeout=30)
    assert status["state"] == "completed"
    assert len(graph.requests()) == 1


def test_cancelling_a_paced_job_stops_it_at_once_and_its_counters_add_up(
    start_workers: Callable[..., Any],
    worker_env: dict[str, str],
    notifier: Notifier,
    graph: SimulatorControl,
) -> None:
    graph.configure(rate_limits={"bulk_tenant": 2, "bulk_app": 20})
    worker_env["TEAMS_NOTIFY_RATE_LIMITS"] = "bulk_tenant=2,bulk_app=20"
    start_workers(1, "-c", "4")
    job_id = notifier.notify_recipients(bulk_body(users(5_000)))
    deadline = time.monotonic() + 30
    while notifier.status(job_id)["requests"]["sent"] < 4:
        assert time.monotonic() < deadline, "the job did not get under way"
        time.sleep(0.05)

    cancelled = json.loads(cli("cancel", job_id, "--json", env=worker_env).stdout)
    returned = time.time()
    [status] = wait_until_ended(notifier, [job_id], timeout=30)
    time.sleep(2)  # a request that slipped through would reach Graph by now (two permits later)

    assert cancelled["requests"]["cancelled"] > 0
    assert status["state"] == "cancelled"
    accepted = graph.requests()
    late = [r for r in accepted if received_at(r) > returned]
    assert len(late) <= 1  # at 2 requests/s, at most the one in flight when the cancel returned
    requests, recipients = status["requests"], status["recipients"]
    assert requests["sent"] == len(accepted)
    assert requests["sent"] + requests["cancelled"] == requests["total"] == 50
    assert recipients["sent"] == sum(len(r["body"]["recipients"]) for r in accepted)
    assert recipients["sent"] + recipients["cancelled"] == recipients["total"] == 5_000
    assert requests["pending"] == recipients["pending"] == 0
    assert notifier.cancel(job_id) == notifier.status(job_id)  # idempotent: nothing changes
    assert cli("cancel", "no-such-job", env=worker_env).returncode == 1


@pytest.fixture
def backend(redis_url: str, tmp_path: Path) -> Iterator[redis.Redis]:
    """The backend's Celery worker on its own queue, recording the statuses it is called back with."""
    env = {**os.environ, "TEAMS_NOTIFY_REDIS_URL": redis_url, "CALLBACK_REDIS_URL": redis_url}
    log = (tmp_path / "backend.log").open("wb")
    process = subprocess.Popen(
        [*BACKEND_WORKER, "-Q", callback_app.QUEUE, "-n", "backend@%h", "--without-heartbeat", "--without-gossip"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).parents[2],
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    process.terminate()
    process.wait(30)
    log.close()
    client.close()


def test_a_backend_is_called_back_once_with_the_final_status_of_completed_failed_and_cancelled_jobs(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl, backend: redis.Redis
) -> None:
    everyone = users(300)
    graph.configure(conflict_user_ids=[everyone[250]])
    start_workers(1)
    options = {"callback": callback_app.TASK, "callback_queue": callback_app.QUEUE}
    completed = notifier.notify_recipients(bulk_body(everyone[:200]), **options)
    with_errors = notifier.notify_recipients(bulk_body(everyone), **options)
    cancelled = notifier.notify_user("jacob@contoso.com", single_body(), send_at=time.time() + 60, **options)
    uncalled = notifier.notify_user("emma@contoso.com", single_body())  # no callback asked for
    notifier.cancel(cancelled)
    finals = {s["job_id"]: s for s in wait_until_ended(notifier, [completed, with_errors, cancelled, uncalled])}

    deadline = time.monotonic() + 30
    while backend.llen(callback_app.RECEIVED) < 3:
        assert time.monotonic() < deadline, "the backend was not called back three times"
        time.sleep(0.1)
    time.sleep(2)  # a second call for the same job would arrive by now
    received = [json.loads(item) for item in backend.lrange(callback_app.RECEIVED, 0, -1)]

    assert sorted(r["job_id"] for r in received) == sorted([completed, with_errors, cancelled])
    assert {r["job_id"]: r["state"] for r in received} == {
        completed: "completed",
        with_errors: "completed_with_errors",
        cancelled: "cancelled",
    }
    assert all(r == finals[r["job_id"]] for r in received)
