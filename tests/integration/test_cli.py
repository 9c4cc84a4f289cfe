"""The command line as an operator uses it: real `teams-notify` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Notifier
from tests.integration.conftest import SimulatorControl, wait_until_ended

pytestmark = pytest.mark.integration

BODY = {
    "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/app"},
    "activityType": "pendingFinanceApprovalRequests",
    "previewText": {"content": "Internal spending team has a pending finance approval requests"},
    "recipients": [
        {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": f"u{i}@contoso.com"}
        for i in range(150)
    ],
}


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_send_then_status_json_show_the_job_to_completion(
    start_workers: Callable[..., Any], worker_env: dict[str, str], graph: SimulatorControl, tmp_path: Path
) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_text(json.dumps(BODY))
    start_workers(1)

    sent = cli("send", "--recipients", "--body", str(body_file), "--json", env=worker_env)
    assert sent.returncode == 0, sent.stderr
    job_id = json.loads(sent.stdout)["job_id"]
    wait_until_ended(Notifier(worker_env["TEAMS_NOTIFY_REDIS_URL"]), [job_id])
    shown = cli("status", job_id, "--json", env=worker_env)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "job_id": job_id,
        "state": "completed",
        "requests": {"total": 2, "sent": 2, "dead_lettered": 0, "cancelled": 0, "pending": 0},
        "recipients": {"total": 150, "sent": 150, "dead_lettered": 0, "cancelled": 0, "pending": 0},
    }
    assert len(graph.requests()) == 2


def test_send_reads_the_body_from_stdin_and_prints_only_the_id(worker_env: dict[str, str]) -> None:
    body = {k: v for k, v in BODY.items() if k != "recipients"}
    sent = cli("send", "--user", "jacob@contoso.com", "--body", "-", env=worker_env, stdin=json.dumps(body))
    assert sent.returncode == 0, sent.stderr
    assert len(sent.stdout.strip()) == 36


def test_an_invalid_body_is_refused_naming_the_field_and_nothing_is_enqueued(
    worker_env: dict[str, str], redis_url: str
) -> None:
    body = {**BODY, "activitytype": "typo"}
    sent = cli("send", "--recipients", "--body", "-", env=worker_env, stdin=json.dumps(body))

    assert sent.returncode == 1
    assert "activitytype" in sent.stderr
    assert "Traceback" not in sent.stderr
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_status_of_an_unknown_job_is_an_error_with_exit_code_1(worker_env: dict[str, str]) -> None:
    shown = cli("status", "no-such-job", "--json", env=worker_env)
    assert shown.returncode == 1
    assert "no-such-job" in shown.stderr
    assert shown.stdout == ""


def test_fleet_status_lists_queue_depth_workers_and_dead_letters(
    start_workers: Callable[..., Any], worker_env: dict[str, str]
) -> None:
    [worker] = start_workers(1)
    shown = cli("status", "--json", env=worker_env)
    assert shown.returncode == 0, shown.stderr
    fleet = json.loads(shown.stdout)
    assert fleet["queues"] == {"teams-notify": 0, "teams-notify.admin": 0}
    assert worker.node in fleet["workers"]
    assert fleet["dead_letters"] == 0
    assert fleet["paused"] is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEAMS_NOTIFY_CLOUD", "mars"),
        ("TEAMS_NOTIFY_GRAPH_URL", "http://graph.example"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "bulk_tenant=fast"),
        ("TEAMS_NOTIFY_LOG_FORMAT", "xml"),
        ("TEAMS_NOTIFY_CLIENT_SECRET", ""),
    ],
)
def test_a_bad_setting_stops_the_worker_with_one_line_naming_it(
    worker_env: dict[str, str], variable: str, value: str
) -> None:
    env = {**worker_env, variable: value}
    started = cli("worker", env=env)
    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert variable in lines[0]


def test_no_secret_reaches_the_logs_or_the_cli_output(
    start_workers: Callable[..., Any], worker_env: dict[str, str], tmp_path: Path
) -> None:
    [worker] = start_workers(1)
    body = {k: v for k, v in BODY.items() if k != "recipients"}
    sent = cli("send", "--user", "jacob@contoso.com", "--body", "-", env=worker_env, stdin=json.dumps(body))
    wait_until_ended(Notifier(worker_env["TEAMS_NOTIFY_REDIS_URL"]), [sent.stdout.strip()])
    worker.stop()
    log = worker.log_path.read_text()
    assert "request" in log
    assert worker_env["TEAMS_NOTIFY_CLIENT_SECRET"] not in log + sent.stdout + sent.stderr
    assert "eyJ" not in log  # no JWT-shaped access token
    assert all(json.loads(line) for line in log.splitlines() if line.strip())  # JSON logs: every line
