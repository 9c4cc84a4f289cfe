"""Tokens for a fleet, with real workers and the simulator's Entra issuing tokens of chosen lifetimes.

Each test prints its figures (token requests counted by the simulator, per tenant); `pytest -s` shows them.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Notifier
from tests.certificates import make_certificate
from tests.integration.conftest import CLIENT_ID, TENANT, SimulatorControl, wait_until_ended
from worker.deadletters import DeadLetterStore
from worker.delivery import BULK_TOKEN_MIN_LIFETIME

pytestmark = pytest.mark.integration

OTHER_TENANT = "0d5e1a7f-3c40-4a6b-9a1b-5d8f2f0e1c11"
SECRET = "integration-secret"
WRONG_SECRET = "Wr0ng~integration-secret-value"
PASSWORD = "integration-pem-password"
#: Every token the simulator issues starts with this (its JWT header), so a grep finds any token anywhere.
TOKEN_PREFIX = (
    base64.urlsafe_b64encode(
        json.dumps({"typ": "JWT", "alg": "HS256", "kid": "teams-notify-simulator"}, separators=(",", ":")).encode()
    )
    .rstrip(b"=")
    .decode()
)
TOPIC = {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/app"}


def bulk(count: int, prefix: str) -> dict[str, Any]:
    return {
        "topic": TOPIC,
        "activityType": "pendingFinanceApprovalRequests",
        "previewText": {"content": "Internal spending team has a pending finance approval requests"},
        "recipients": [
            {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": f"{prefix}{i}@contoso.com"}
            for i in range(count)
        ],
    }


@pytest.fixture
def entra(graph: SimulatorControl) -> Iterator[SimulatorControl]:
    """The simulator with the app's secret registered; every Entra knob these tests turn is put back after."""
    graph.configure(clients={CLIENT_ID: SECRET})
    yield graph
    graph.configure(clients={}, client_certificates={}, token_lifetime=3599, token_lifetimes={}, hung_token_tenants=[])


def log_lines(paths: list[Path]) -> list[dict[str, Any]]:
    """The JSON log lines of the workers."""
    lines = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def redis_dump(redis_url: str) -> str:
    """Every key and value in Redis, as text."""
    client = redis.Redis.from_url(redis_url)
    parts: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            value: Any = b""
            if kind == "string":
                value = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            parts.append(f"{key!r} {value!r}")
            parts.extend(_message_bodies(value))
    finally:
        client.close()
    return "\n".join(parts)


def _message_bodies(value: Any) -> list[str]:
    """The decoded bodies of the Celery messages in a value (kombu keeps them base64-encoded)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | set) else [value]
    bodies = []
    for item in items:
        raw = item[0] if isinstance(item, tuple) else item
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        start = text.find("{")
        try:
            message = json.loads(text[start:]) if start >= 0 else None
            if isinstance(message, list):  # kombu's unacked hash holds [message, exchange, routing key]
                message = message[0]
            if isinstance(message, dict) and message.get("properties", {}).get("body_encoding") == "base64":
                bodies.append(base64.b64decode(message["body"]).decode(errors="replace"))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return bodies


def assert_nothing_leaked(workers: list[Any], worker_env: dict[str, str], *secrets: str) -> None:
    """No secret, private key, password or access token in the logs, the CLI's output or Redis."""
    status = subprocess.run(
        [sys.executable, "-m", "worker", "status", "--json"],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    captured = "\n".join(
        [
            *(w.log_path.read_text(errors="replace") for w in workers),
            status.stdout,
            status.stderr,
            redis_dump(worker_env["TEAMS_NOTIFY_REDIS_URL"]),
        ]
    )
    for secret in secrets:
        assert secret not in captured
    assert "PRIVATE KEY" not in captured
    assert TOKEN_PREFIX not in captured
    assert "Bearer ey" not in captured


def token_requests(entra: SimulatorControl) -> dict[str, int]:
    return dict(entra.stats()["tokens_by_tenant"])


def test_four_workers_of_eight_threads_starting_at_once_ask_entra_once_per_tenant(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, entra: SimulatorControl
) -> None:
    jobs = [
        notifier.notify_recipients(bulk(2_000, "a")),
        notifier.notify_recipients(bulk(2_000, "b"), tenant_id=OTHER_TENANT),
    ]  # queued first: the four workers start on them together
    workers = start_workers(4, "-c", "8")

    statuses = wait_until_ended(notifier, jobs)

    counted = token_requests(entra)
    print(f"\n4 workers x 8 threads, 2 tenants, 40 bulk requests: token requests {counted}")
    assert [s["state"] for s in statuses] == ["completed", "completed"]
    assert counted == {TENANT: 1, OTHER_TENANT: 1}
    fetched = [line for line in log_lines([w.log_path for w in workers]) if "from Entra" in line.get("message", "")]
    assert len(fetched) == 2
    assert_nothing_leaked(workers, worker_env, SECRET)


def test_tokens_usable_for_bulk_15s_are_renewed_about_once_per_generation_over_a_40s_job(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, entra: SimulatorControl
) -> None:
    entra.configure(token_lifetime=BULK_TOKEN_MIN_LIFETIME + 15)
    worker_env["TEAMS_NOTIFY_RATE_LIMITS"] = "bulk_tenant=1"  # 40 requests at one a second: a 40 s job
    start_workers(2, "-c", "4")

    started = time.monotonic()
    [status] = wait_until_ended(notifier, [notifier.notify_recipients(bulk(4_000, "g"))], timeout=180)
    took = time.monotonic() - started

    issued = token_requests(entra).get(TENANT, 0)
    generations = math.ceil(took / 15)
    print(f"\ntokens usable 15 s for bulk, job of {took:.1f} s: {issued} token requests, {generations} generations")
    assert status["state"] == "completed"
    assert entra.stats()["responses"].get("412", 0) == 0  # no bulk send ever went out with under 45 minutes
    assert generations <= issued <= generations + 2


def test_a_certificate_only_worker_delivers(
    start_workers: Callable[..., Any],
    worker_env: dict[str, str],
    notifier: Notifier,
    entra: SimulatorControl,
    tmp_path: Path,
) -> None:
    certificate = make_certificate("teams-notify integration")
    path = certificate.write(tmp_path / "app.pem", password=PASSWORD)
    entra.configure(client_certificates={CLIENT_ID: [certificate.certificate_pem]})
    del worker_env["TEAMS_NOTIFY_CLIENT_SECRET"]
    worker_env["TEAMS_NOTIFY_CLIENT_CERTIFICATE"] = str(path)
    worker_env["TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD"] = PASSWORD
    workers = start_workers(1)

    body = {k: v for k, v in bulk(0, "").items() if k != "recipients"}
    jobs = [notifier.notify_recipients(bulk(250, "c")), notifier.notify_user("jacob@contoso.com", body)]
    statuses = wait_until_ended(notifier, jobs)

    assert [s["state"] for s in statuses] == ["completed", "completed"]
    assert token_requests(entra) == {TENANT: 1}
    [fetched] = [line for line in log_lines([w.log_path for w in workers]) if "from Entra" in line.get("message", "")]
    assert "certificate" in fetched["message"]
    key_body = certificate.key_pem.splitlines()[5]
    assert_nothing_leaked(workers, worker_env, PASSWORD, key_body)


def test_a_wrong_secret_delivers_nothing_dead_letters_nothing_and_once_fixed_delivers_everything_once(
    start_workers: Callable[..., Any], worker_env: dict[str, str], notifier: Notifier, entra: SimulatorControl
) -> None:
    worker_env["TEAMS_NOTIFY_CLIENT_SECRET"] = WRONG_SECRET
    body = {k: v for k, v in bulk(0, "").items() if k != "recipients"}
    jobs = [notifier.notify_recipients(bulk(300, "w")), notifier.notify_user("jacob@contoso.com", body)]
    wrong = start_workers(2)

    time.sleep(20)

    statuses = [notifier.status(job) for job in jobs]
    assert entra.requests() == []
    assert all(s["state"] in ("queued", "sending") for s in statuses), statuses
    assert all(s["requests"]["dead_lettered"] == 0 for s in statuses)
    assert [s["requests"]["pending"] for s in statuses] == [3, 1]
    refusals = [
        line
        for line in log_lines([w.log_path for w in wrong])
        if line.get("logger") == "worker.auth" and "AADSTS7000215" in line.get("message", "")
    ]
    every_line = sum("7000215" in w.log_path.read_text() for w in wrong)
    print(
        f"\nwrong secret for 20 s: {len(refusals)} auth log lines naming AADSTS7000215 from 2 workers, "
        f"{entra.stats()['token_errors']} token requests refused by Entra, {every_line} log files mention it"
    )
    assert 1 <= len(refusals) <= 8  # at most one line per worker every ten seconds
    assert all(line["level"] == "ERROR" and "nothing is dead-lettered" in line["message"] for line in refusals)
    assert entra.stats()["token_errors"] <= 12  # the fleet waits, with backoff, before asking Entra again

    for worker in wrong:
        worker.stop()
    worker_env["TEAMS_NOTIFY_CLIENT_SECRET"] = SECRET
    fixed = start_workers(2)
    statuses = wait_until_ended(notifier, jobs, timeout=180)

    assert [s["state"] for s in statuses] == ["completed", "completed"]
    delivered = entra.delivered()
    assert len(delivered) == 300
    assert set(delivered.values()) == {1}
    assert [r["endpoint"] for r in entra.requests()].count("user") == 1
    assert_nothing_leaked([*wrong, *fixed], worker_env, SECRET, WRONG_SECRET)


def test_a_hung_token_endpoint_for_one_tenant_does_not_hold_another_tenants_sends(
    start_workers: Callable[..., Any], notifier: Notifier, entra: SimulatorControl
) -> None:
    entra.configure(hung_token_tenants=[OTHER_TENANT])
    hung_job = notifier.notify_recipients(bulk(500, "h"), tenant_id=OTHER_TENANT)  # first in line
    start_workers(1, "-c", "4")

    started = time.monotonic()
    job = notifier.notify_recipients(bulk(1_000, "t"))
    [status] = wait_until_ended(notifier, [job], timeout=60)
    took = time.monotonic() - started

    print(f"\nEntra hung for one tenant: the other tenant's 10 requests delivered in {took:.1f} s")
    assert status["state"] == "completed"
    assert notifier.status(hung_job)["requests"]["sent"] == 0
    assert entra.stats()["token_requests_held"] >= 1

    entra.configure(hung_token_tenants=[])
    [status] = wait_until_ended(notifier, [hung_job], timeout=120)
    assert status["state"] == "completed"
    assert token_requests(entra)[OTHER_TENANT] == 1


def test_a_tenant_whose_tokens_live_30_minutes_has_its_bulk_sends_dead_lettered_and_its_others_delivered(
    start_workers: Callable[..., Any], notifier: Notifier, entra: SimulatorControl, redis_url: str
) -> None:
    entra.configure(token_lifetimes={TENANT: 1800})
    start_workers(1)
    body = {k: v for k, v in bulk(0, "").items() if k != "recipients"}

    bulk_job, user_job = notifier.notify_recipients(bulk(200, "s")), notifier.notify_user("jacob@contoso.com", body)
    statuses = wait_until_ended(notifier, [bulk_job, user_job])

    assert [s["state"] for s in statuses] == ["completed_with_errors", "completed"]
    letters = DeadLetterStore(redis.Redis.from_url(redis_url, decode_responses=True)).list()
    assert [letter.reason for letter in letters] == ["token_lifetime_too_short"] * 2
    assert "tokens of 30 minutes" in letters[0].error.message
    assert token_requests(entra) == {TENANT: 1}
    assert entra.stats()["responses"].get("412", 0) == 0
