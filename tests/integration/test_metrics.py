"""A live worker's /metrics and log lines after a job with a 429, a 502 and a dead letter, with the thread pool
and with a prefork pool (whose children's counts must reach the one /metrics the worker serves)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers import Notifier
from tests.deploy.test_grafana import dashboard_series
from tests.integration.conftest import TENANT, SimulatorControl, wait_until_ended
from tests.integration.test_pipeline import bulk_body, users
from worker import sandbox

pytestmark = pytest.mark.integration

#: The pools a worker runs with: the default threads, and prefork with two children.
POOLS = {"threads": [], "prefork": ["-P", "prefork", "-c", "2"]}
#: The worker's processes each pool has: the main one, plus the prefork children.
PROCESSES = {"threads": 1, "prefork": 3}


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the sample with this name and these labels (among others), None if there is none."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


def scrape_until(port: int, name: str, timeout: float = 60, **labels: str) -> str:
    """Scrapes /metrics until the sample is there and above 0."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        if (sample(metrics, name, **labels) or 0) > 0:
            return metrics
        assert time.monotonic() < deadline, f"{name} {labels} never counted"
        time.sleep(0.2)


def total(metrics: str, name: str, **labels: str) -> float:
    """The sum of the samples with this name and these labels (among others)."""
    return sum(
        float(found.value)
        for family in text_string_to_metric_families(metrics)
        for found in family.samples
        if found.name == name and all(found.labels.get(k) == v for k, v in labels.items())
    )


def names_with_samples(metrics: str) -> set[str]:
    return {found.name for family in text_string_to_metric_families(metrics) for found in family.samples}


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_scrape_after_a_429_a_502_and_a_dead_letter_finds_each_counted(
    worker_env: dict[str, str],
    redis_url: str,
    notifier: Notifier,
    graph: SimulatorControl,
    tmp_path: Path,
    pool: str,
) -> None:
    everyone = users(150)
    graph.configure(error_rate=1.0, error_statuses=[429], fault_retry_after=0.2, conflict_user_ids=[everyone[0]])
    port = sandbox.free_port()
    log_path = tmp_path / "m.log"
    env = {**worker_env, "TEAMS_NOTIFY_METRICS_PORT": str(port)}
    worker = sandbox.WorkerProcess(env, "m", log_path, POOLS[pool])
    worker.start()
    try:
        sandbox.wait_ready(redis_url, [worker.node])
        job_id = notifier.notify_recipients(bulk_body(everyone), tenant_id=TENANT)
        during = scrape_until(port, "teams_notify_throttled_total", endpoint="recipients")
        graph.configure(error_statuses=[502])
        scrape_until(port, "teams_notify_retries_total", endpoint="recipients", cause="server_error")
        graph.configure(error_rate=0.0)
        [status] = wait_until_ended(notifier, [job_id])
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        worker.stop()
    seen = graph.stats()

    dead = status["recipients"]["dead_lettered"]
    assert dead > 0
    assert (sample(metrics, "teams_notify_retries_total", endpoint="recipients", cause="throttled") or 0) >= 1
    assert (sample(metrics, "teams_notify_retry_after_seconds_count") or 0) >= 1
    assert (sample(metrics, "teams_notify_requests_total", endpoint="recipients", outcome="retried") or 0) >= 2
    assert sample(metrics, "teams_notify_requests_total", endpoint="recipients", outcome="dead_lettered") == 1
    assert sample(metrics, "teams_notify_tenant_requests_total", tenant=TENANT, outcome="sent") == 1
    assert sample(metrics, "teams_notify_tenant_requests_total", tenant=TENANT, outcome="dead_lettered") == 1
    assert sample(metrics, "teams_notify_recipients_dead_lettered_total") == dead
    assert sample(metrics, "teams_notify_recipients_sent_total") == 150 - dead
    assert (sample(metrics, "teams_notify_slot_wait_seconds_count") or 0) >= 1
    assert sample(metrics, "teams_notify_dead_letters") == 1  # read from Redis at the scrape

    # The counts are the whole worker's (under prefork, the children's): they match what Graph saw.
    assert seen["responses"].get("429", 0) >= 1
    assert total(metrics, "teams_notify_throttled_total") == seen["responses"]["429"]
    assert total(metrics, "teams_notify_graph_responses_total", status="429") == seen["responses"]["429"]
    assert total(metrics, "teams_notify_graph_responses_total", status="502") == seen["responses"]["502"]
    assert total(metrics, "teams_notify_requests_total", outcome="sent") == seen["accepted_requests"] == 1
    assert total(metrics, "teams_notify_graph_request_seconds_count") == sum(seen["responses"].values())
    assert sample(metrics, "teams_notify_worker_processes") == PROCESSES[pool]
    assert (sample(metrics, "teams_notify_job_seconds_count", endpoint="recipients") or 0) > 0
    # Every series the Grafana dashboard queries is there, with samples (`up` is Prometheus's own): the lanes
    # only while the job is in them.
    assert "teams_notify_lane_requests" in names_with_samples(during)
    missing = dashboard_series() - {"up"} - names_with_samples(metrics) - names_with_samples(during)
    assert not missing, missing

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    calls = [line for line in lines if "client_request_id" in line]
    assert {429, 502, 202, 409} <= {line["status"] for line in calls}
    for line in calls:
        assert line["job_id"] == job_id
        assert line["tenant"] == TENANT
        assert line["endpoint"] == "recipients"
        assert {"request_index", "request_id", "attempt", "duration_ms"} <= set(line)
        assert line["client_request_id"]
    assert "integration-secret" not in log_path.read_text()
