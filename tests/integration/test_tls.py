"""Redis over TLS, as on Azure Cache for Redis: a TLS-only redis-server with a password, its own CA.

The whole pipeline (producer, broker, worker, result backend) runs against it when its CA is in the bundle
SSL_CERT_FILE names; a server whose certificate comes from another CA, or names another host, is refused by
the producer (nothing enqueued) and by the worker (it exits at start with one line).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from producers import BrokerUnavailable, Notifier, keys
from tests.integration.conftest import CLIENT_ID, TENANT, SimulatorControl, wait_until_ended
from tests.tls import TLSRedis, write_bundle
from worker import config, sandbox
from worker.app import create_app
from worker.simulator import Simulator

pytestmark = pytest.mark.integration

PASSWORD = "azure-like-Access-Key-7f3a9c"
USER = "569363e2-4e49-4661-87f2-16f245c5d66a"
BODY = {
    "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/app"},
    "activityType": "taskCreated",
    "previewText": {"content": "Over TLS"},
}
#: What kombu logs when it connects to a rediss:// broker without verifying it.
KOMBU_INSECURE = "insecure SSL"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TLSRedis]]:
    """TLS-only redis-servers: `trusted` (our CA, right names), `untrusted` (another CA), `misnamed` (our CA,
    a certificate for another host)."""
    ours, theirs = trustme.CA(), trustme.CA()
    base = tmp_path_factory.mktemp("tls-redis")
    layout = {
        "trusted": (ours, ("localhost", "127.0.0.1")),
        "untrusted": (theirs, ("localhost", "127.0.0.1")),
        "misnamed": (ours, ("redis.elsewhere.example",)),
    }
    started: dict[str, TLSRedis] = {}
    try:
        for name, (ca, names) in layout.items():
            started[name] = TLSRedis(base / name, ca, names, PASSWORD).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def trusted(servers: dict[str, TLSRedis]) -> TLSRedis:
    server = servers["trusted"]
    client = server.client()
    client.flushall()
    client.close()
    return server


@pytest.fixture
def bundle(tmp_path: Path, simulator: Simulator, servers: dict[str, TLSRedis], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The simulator's CA and the trusted Redis CA in one bundle, named by SSL_CERT_FILE here as well."""
    path = write_bundle(tmp_path / "bundle.pem", Path(simulator.bundle_path), servers["trusted"].ca_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return path


def tls_env(simulator: Simulator, url: str, bundle: Path) -> dict[str, str]:
    """A worker's environment against the simulator and a TLS Redis, trusting what the bundle holds."""
    env = sandbox.simulator_env(
        simulator,
        url,
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret="integration-secret",
        metrics_port="0",
        rate_limits="off",
    )
    env["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"] = str(bundle)
    return env


def deliver(env: dict[str, str], tmp_path: Path, name: str) -> tuple[dict[str, Any], str]:
    """Starts a worker, enqueues one job through the producer, waits for it: its status and the worker's log."""
    url = env["TEAMS_NOTIFY_REDIS_URL"]
    worker = sandbox.WorkerProcess(env, name, tmp_path / f"{name}.log").start()
    notifier = Notifier(url)
    try:
        sandbox.wait_ready(url, [worker.node])
        job_id = notifier.notify_user(USER, BODY)
        [status] = wait_until_ended(notifier, [job_id], timeout=60)
    finally:
        notifier.close()
        worker.stop()
    return status, worker.log_path.read_text(errors="replace")


def refused_at_start(env: dict[str, str], tmp_path: Path) -> tuple[int | None, str]:
    """Starts a worker that must exit by itself at start: its exit code and its whole output."""
    worker = sandbox.WorkerProcess(env, "refused", tmp_path / "refused.log").start()
    deadline = time.monotonic() + 30
    while worker.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    exited = not worker.running()
    code = worker.stop()
    assert exited, "the worker kept running against a Redis whose certificate it cannot trust"
    return code, worker.log_path.read_text(errors="replace")


def test_a_job_goes_through_a_tls_only_redis_from_producer_to_graph(
    trusted: TLSRedis, bundle: Path, simulator: Simulator, graph: SimulatorControl, tmp_path: Path
) -> None:
    env = tls_env(simulator, trusted.url(), bundle)

    status, log = deliver(env, tmp_path, "tls")

    assert status["state"] == "completed"
    assert status["requests"]["sent"] == 1
    assert [request["path"] for request in graph.requests()] == [
        f"/v1.0/users/{USER}/teamwork/sendActivityNotification"
    ]
    assert KOMBU_INSECURE not in log
    assert "CERT_NONE" not in log
    assert PASSWORD not in log


def test_admin_results_come_back_through_the_verified_result_backend(
    trusted: TLSRedis, bundle: Path, simulator: Simulator, graph: SimulatorControl, tmp_path: Path
) -> None:
    env = tls_env(simulator, trusted.url(), bundle)
    worker = sandbox.WorkerProcess(env, "admin", tmp_path / "admin.log").start()
    app = create_app(config.load(env))
    try:
        sandbox.wait_ready(trusted.url(), [worker.node])
        assert app.conf.redis_backend_use_ssl["ssl_ca_certs"] == str(bundle)

        result = app.send_task("teams_notify.admin.pause", queue=keys.ADMIN_QUEUE).get(timeout=30)
    finally:
        app.close()
        worker.stop()

    assert result["paused"] is True


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ("untrusted", "self-signed certificate in certificate chain, checked against the CA bundle"),
        ("misnamed", "Hostname mismatch, certificate is not valid for 'localhost'"),
    ],
)
def test_a_redis_whose_certificate_cannot_be_trusted_is_refused_by_the_producer_and_the_worker(
    server: str,
    reason: str,
    servers: dict[str, TLSRedis],
    trusted: TLSRedis,
    bundle: Path,
    simulator: Simulator,
    graph: SimulatorControl,
    tmp_path: Path,
) -> None:
    refused = servers[server]
    looking = refused.client()  # trusts the refused server's own CA, to see what reached it
    looking.flushall()

    with pytest.raises(BrokerUnavailable) as caught:
        Notifier(refused.url()).notify_user(USER, BODY)
    code, output = refused_at_start(tls_env(simulator, refused.url(), bundle), tmp_path)
    status, log = deliver(tls_env(simulator, trusted.url(), bundle), tmp_path, "twin")  # the trusted twin

    message = str(caught.value)
    assert "TLS certificate verification failed" in message
    assert reason in message
    assert "nothing was enqueued" in message
    assert PASSWORD not in message
    assert looking.dbsize() == 0
    looking.close()
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("teams-notify: error: TEAMS_NOTIFY_REDIS_URL: TLS certificate verification failed")
    assert reason in lines[0]
    assert KOMBU_INSECURE not in output
    assert PASSWORD not in output
    assert status["state"] == "completed"
    assert KOMBU_INSECURE not in log
