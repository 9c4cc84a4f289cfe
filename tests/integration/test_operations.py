"""An operator's commands against a live fleet: pause, resume, drain, dead letters."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from producers import Notifier
from tests.integration.conftest import SimulatorControl, wait_until_ended
from tests.integration.test_cli import cli
from tests.integration.test_pipeline import bulk_body, users
from worker import sandbox

pytestmark = pytest.mark.integration


def test_a_paused_fleet_keeps_jobs_queued_and_delivers_them_after_resume(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, graph: SimulatorControl
) -> None:
    start_workers(1)
    assert cli("pause", env=worker_env).returncode == 0

    job_id = notifier.notify_recipients(bulk_body(users(300)))
    time.sleep(2)
    assert notifier.status(job_id)["state"] == "queued"
    assert graph.requests() == []
    fleet = json.loads(cli("status", "--json", env=worker_env).stdout)
    assert fleet["paused"] is True
    assert fleet["waiting"] == 3  # the job's three requests wait in their lane, none handed out
    assert fleet["lanes"][0]["waiting"] == 3

    assert cli("resume", env=worker_env).returncode == 0
    [status] = wait_until_ended(notifier, [job_id])
    assert status["state"] == "completed"
    assert json.loads(cli("status", "--json", env=worker_env).stdout)["paused"] is False


def test_a_worker_started_while_paused_takes_no_jobs(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, graph: SimulatorControl
) -> None:
    assert cli("pause", env=worker_env).returncode == 0
    start_workers(1)
    notifier.notify_user("jacob@contoso.com", {k: v for k, v in bulk_body([]).items() if k != "recipients"})
    time.sleep(2)
    assert graph.requests() == []
    assert cli("resume", env=worker_env).returncode == 0


def test_drain_waits_with_progress_until_nothing_is_left_and_times_out_when_paused(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, graph: SimulatorControl
) -> None:
    graph.configure(latency_ms=50)
    start_workers(1)
    job_id = notifier.notify_recipients(bulk_body(users(2_000)))

    drained = cli("drain", "--timeout", "60", env=worker_env)
    assert drained.returncode == 0, drained.stderr
    assert "queued" in drained.stderr
    assert notifier.status(job_id)["state"] == "completed"

    assert cli("pause", env=worker_env).returncode == 0
    notifier.notify_recipients(bulk_body(users(10)))
    assert cli("drain", "--timeout", "1", env=worker_env).returncode != 0
    assert cli("resume", env=worker_env).returncode == 0


def test_a_409_dead_letter_replayed_with_a_teams_app_id_is_delivered(
    start_workers: Callable[..., Any],
    worker_env: dict[str, str],
    notifier: Notifier,
    graph: SimulatorControl,
    tmp_path: Path,
) -> None:
    everyone = users(120)
    graph.configure(conflict_user_ids=[everyone[0]])
    start_workers(1)
    job_id = notifier.notify_recipients(bulk_body(everyone))
    wait_until_ended(notifier, [job_id])

    listed = cli("dead-letters", "list", "--json", env=worker_env)
    [letter] = json.loads(listed.stdout)
    assert {"id", "job_id", "reason", "status", "error", "request", "attempts", "created_at"} <= set(letter)
    assert letter["status"] == 409
    assert letter["error"]["code"] == "Conflict"
    assert letter["request"]["method"] == "POST"
    assert cli("dead-letters", "show", letter["id"], env=worker_env).returncode == 0
    export = tmp_path / "letters.jsonl"
    assert cli("dead-letters", "export", str(export), env=worker_env).returncode == 0
    assert [json.loads(line)["id"] for line in export.read_text().splitlines()] == [letter["id"]]

    teams_app = "5e4a1f3d-2a4b-4c9e-9d0f-1a2b3c4d5e6f"
    replayed = cli("dead-letters", "replay", letter["id"], "--teams-app-id", teams_app, env=worker_env)
    assert replayed.returncode == 0, replayed.stderr
    [status] = wait_until_ended(notifier, [job_id])

    assert status["state"] == "completed"
    assert status["recipients"] == {"total": 120, "sent": 120, "dead_lettered": 0, "cancelled": 0, "pending": 0}
    assert json.loads(cli("dead-letters", "list", "--json", env=worker_env).stdout) == []
    retried = [r for r in graph.requests() if r["body"].get("teamsAppId") == teams_app]
    assert len(retried) == 1
    assert retried[0]["body"]["recipients"][0]["userId"] == everyone[0]


def test_discard_all_drops_every_dead_letter(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, graph: SimulatorControl
) -> None:
    everyone = users(300)
    graph.configure(conflict_user_ids=[everyone[0], everyone[150]])
    start_workers(1)
    wait_until_ended(notifier, [notifier.notify_recipients(bulk_body(everyone))])
    assert len(json.loads(cli("dead-letters", "list", "--json", env=worker_env).stdout)) == 2

    assert cli("dead-letters", "discard", "--all", env=worker_env).returncode == 0
    assert json.loads(cli("dead-letters", "list", "--json", env=worker_env).stdout) == []


def wait_until_sent(notifier: Notifier, job_id: str, requests: int) -> None:
    """Waits until the job is under way: that many of its requests sent."""
    deadline = time.monotonic() + 30
    while notifier.status(job_id)["requests"]["sent"] < requests:
        assert time.monotonic() < deadline, "the job did not get under way"
        time.sleep(0.05)


def test_sigterm_hands_back_in_flight_work_and_another_worker_finishes_it_exactly_once(
    start_workers: Callable[..., Any], notifier: Notifier, graph: SimulatorControl
) -> None:
    graph.configure(latency_ms=200)
    [first] = start_workers(1)
    everyone = users(5_000)
    job_id = notifier.notify_recipients(bulk_body(everyone))
    wait_until_sent(notifier, job_id, 5)

    first.signal(signal.SIGTERM)
    start_workers(1)
    [status] = wait_until_ended(notifier, [job_id], timeout=120)

    assert first.stop() == 0
    assert status["state"] == "completed"
    delivered = graph.delivered()
    assert set(delivered) == set(everyone)
    assert set(delivered.values()) == {1}


def test_a_worker_serves_prometheus_metrics_of_its_graph_calls(
    worker_env: dict[str, str], redis_url: str, notifier: Notifier, graph: SimulatorControl, tmp_path: Path
) -> None:
    port = sandbox.free_port()
    worker = sandbox.WorkerProcess({**worker_env, "TEAMS_NOTIFY_METRICS_PORT": str(port)}, "m", tmp_path / "m.log")
    worker.start()
    try:
        sandbox.wait_ready(redis_url, [worker.node])
        wait_until_ended(notifier, [notifier.notify_recipients(bulk_body(users(150)))])
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        worker.stop()
    assert 'teams_notify_graph_responses_total{endpoint="bulk",status="202"} 2.0' in metrics
    assert "teams_notify_recipients_sent_total 150.0" in metrics


def test_admin_commands_are_celery_tasks_another_backend_can_send_through_the_broker(
    start_workers: Callable[..., Any], worker_env: dict[str, str], redis_url: str
) -> None:
    start_workers(1)
    broker = Celery(broker=redis_url)
    broker.send_task("teams_notify.admin.pause", queue="teams-notify.admin")
    deadline = time.monotonic() + 20
    while not json.loads(cli("status", "--json", env=worker_env).stdout)["paused"]:
        assert time.monotonic() < deadline, "the pause task did not run"
        time.sleep(0.2)
    broker.send_task("teams_notify.admin.resume", queue="teams-notify.admin")
    while json.loads(cli("status", "--json", env=worker_env).stdout)["paused"]:
        assert time.monotonic() < deadline, "the resume task did not run while the fleet was paused"
        time.sleep(0.2)
    broker.close()


def test_admin_tasks_return_the_clis_json_through_the_result_backend(
    start_workers: Callable[..., Any],
    worker_env: dict[str, str],
    redis_url: str,
    notifier: Notifier,
    graph: SimulatorControl,
) -> None:
    everyone = users(150)
    graph.configure(conflict_user_ids=[everyone[120]])
    start_workers(1)
    job_id = notifier.notify_recipients(bulk_body(everyone))
    wait_until_ended(notifier, [job_id])
    backend = Celery(broker=redis_url, backend=redis_url)

    def call(name: str, *args: Any) -> Any:
        return backend.send_task(f"teams_notify.admin.{name}", args=list(args), queue="teams-notify.admin").get(
            timeout=20
        )

    try:
        assert call("status", job_id) == json.loads(cli("status", job_id, "--json", env=worker_env).stdout)
        fleet = call("status")
        assert fleet["dead_letters"] == 1
        assert {"waiting", "delayed", "handed", "in_flight", "lanes", "workers", "paused"} <= set(fleet)
        [letter] = call("dead_letters_list")
        assert call("dead_letters_show", letter["id"]) == letter
        assert call("drain") == {"waiting": 0, "delayed": 0, "handed": 0, "in_flight": 0, "queued": 0}
        assert call("cancel", job_id)["state"] == "completed_with_errors"  # an ended job stays as it was
        assert call("dead_letters_discard", letter["id"]) == [letter["id"]]
        assert call("dead_letters_list") == []
    finally:
        backend.close()


def test_fleet_status_shows_each_lane_with_its_rate_and_limit(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, graph: SimulatorControl
) -> None:
    graph.configure(rate_limits={"bulk_tenant": 2, "bulk_app": 20})
    worker_env["TEAMS_NOTIFY_RATE_LIMITS"] = "bulk_tenant=2,bulk_app=20"
    start_workers(1)
    job_id = notifier.notify_recipients(bulk_body(users(3_000)))
    wait_until_sent(notifier, job_id, 6)

    fleet = json.loads(cli("status", "--json", env=worker_env).stdout)
    [lane] = [lane for lane in fleet["lanes"] if lane["class"] == "bulk"]
    assert lane["tenant"] == worker_env["TEAMS_NOTIFY_TENANT_ID"]
    assert lane["waiting"] + lane["handed"] + lane["in_flight"] > 0
    assert lane["published_limit"] == 2
    assert 0 < lane["rate"] <= 2
    text = cli("status", env=worker_env)
    assert text.returncode == 0
    assert "bulk" in text.stdout
    assert notifier.cancel(job_id)["requests"]["cancelled"] > 0


def test_a_killed_worker_loses_nothing_another_worker_finishes_its_requests_exactly_once(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, graph: SimulatorControl
) -> None:
    graph.configure(latency_ms=300)
    [doomed] = start_workers(1)
    everyone = users(3_000)
    job_id = notifier.notify_recipients(bulk_body(everyone))
    wait_until_sent(notifier, job_id, 3)

    doomed.signal(signal.SIGKILL)
    start_workers(1)
    killed = time.monotonic()
    [status] = wait_until_ended(notifier, [job_id], timeout=90)

    assert time.monotonic() - killed < 60  # leases of 10 s: the dead worker's requests come back in seconds

    assert status["state"] == "completed"
    delivered = graph.delivered()
    assert set(delivered) == set(everyone)
    assert sum(delivered.values()) - len(everyone) <= 8 * 100  # at most the requests in flight at the kill
