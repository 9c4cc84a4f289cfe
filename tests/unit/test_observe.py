"""What operators see: JSON log lines with their fields, bounded tenant labels (or none), the fleet read at each
scrape, and a prefork worker's processes all in its /metrics."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from producers import Notifier, keys
from producers.errors import ConfigurationError
from tests.unit.notification_examples import TENANT, USER, user_body
from worker import config, exporter, metrics, metricsdir, observe
from worker.delivery import retry_cause
from worker.errors import AuthError, Throttled, TransientGraphError, Unauthorized
from worker.lanes import LaneStore
from worker.sandbox import free_port


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("worker.delivery", logging.INFO, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_carries_the_fields_passed_with_extra_and_never_a_secret() -> None:
    line = observe.JsonFormatter().format(
        record(
            "sent",
            job_id="j1",
            request_index=3,
            status=202,
            request_id=None,
            duration_ms=12.5,
            header="Authorization: Bearer eyJ0eXAi.secret",
            thing=object(),
        )
    )
    entry = json.loads(line)
    assert entry["message"] == "sent"
    assert (entry["job_id"], entry["request_index"], entry["status"], entry["request_id"]) == ("j1", 3, 202, None)
    assert entry["duration_ms"] == 12.5
    assert "eyJ0eXAi" not in line
    assert entry["header"] == "Authorization: Bearer ***"
    assert isinstance(entry["thing"], str)


def test_a_plain_record_has_only_the_usual_fields() -> None:
    entry = json.loads(observe.JsonFormatter().format(record("hello")))
    assert set(entry) == {"time", "level", "logger", "message", "process"}


def test_tenant_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_tenants", set())
    names = [observe.tenant_label(f"tenant-{i}") for i in range(observe.MAX_TENANT_LABELS + 10)]
    assert names[: observe.MAX_TENANT_LABELS] == [f"tenant-{i}" for i in range(observe.MAX_TENANT_LABELS)]
    assert set(names[observe.MAX_TENANT_LABELS :]) == {observe.OTHER_TENANT}
    assert observe.tenant_label("tenant-0") == "tenant-0"  # one seen first keeps its label
    assert observe.tenant_label(None) == observe.OTHER_TENANT
    assert [observe.tenant_label(name) for name in names] == names  # labelling a label changes nothing


def test_tenant_labels_off_count_every_tenant_as_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_tenants", set())
    monkeypatch.setattr(metrics, "_label_tenants", True)
    observe.label_tenants(False)
    assert {observe.tenant_label(TENANT), observe.tenant_label("another"), observe.tenant_label(None)} == {"all"}
    observe.label_tenants(True)
    assert observe.tenant_label(TENANT) == TENANT


def test_token_requests_are_bounded_by_tenant_like_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_tenants", {f"tenant-{i}" for i in range(observe.MAX_TENANT_LABELS)})
    chosen = CollectorRegistry()
    counter = observe.TenantCounter("t_tokens", "test", ["tenant", "outcome"], registry=chosen)
    counter.labels("tenant-1", "issued").inc()
    counter.labels("tenant-new", "issued").inc()
    counter.labels(tenant="tenant-newer", outcome="issued").inc()
    assert value(chosen, "t_tokens_total", tenant="tenant-1", outcome="issued") == 1
    assert value(chosen, "t_tokens_total", tenant="other", outcome="issued") == 2
    assert value(chosen, "t_tokens_total", tenant="tenant-new", outcome="issued") is None
    assert isinstance(observe.TOKEN_REQUESTS, observe.TenantCounter)
    assert isinstance(observe.TENANT_REQUESTS, observe.TenantCounter)


def test_the_tenant_label_switch_is_a_setting_on_by_default() -> None:
    assert config.load({}).metrics_tenants is True
    assert config.load({"TEAMS_NOTIFY_METRICS_TENANTS": "OFF"}).metrics_tenants is False
    assert config.load({"TEAMS_NOTIFY_METRICS_TENANTS": " on "}).metrics_tenants is True
    with pytest.raises(ConfigurationError) as raised:
        config.load({"TEAMS_NOTIFY_METRICS_TENANTS": "no"})
    assert str(raised.value) == "TEAMS_NOTIFY_METRICS_TENANTS='no' is not on or off"


def test_the_worker_command_applies_the_tenant_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_label_tenants", True)
    monkeypatch.delenv(metricsdir.ENV, raising=False)
    with observe.worker_metrics(config.Settings(metrics_port=0, metrics_tenants=False)) as served:
        assert served is False
        assert observe.tenant_label(TENANT) == observe.ALL_TENANTS


def test_retries_are_counted_by_cause() -> None:
    assert retry_cause(Throttled("slow down", status=429, retry_after=2)) == "throttled"
    assert retry_cause(TransientGraphError("bad gateway", status=502)) == "server_error"
    assert retry_cause(TransientGraphError("timed out")) == "transport"
    assert retry_cause(Unauthorized("no", status=401)) == "auth"
    assert retry_cause(AuthError("Entra is down", transient=True)) == "auth"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def registry(store: redis.Redis) -> CollectorRegistry:
    chosen = CollectorRegistry()
    chosen.register(observe.FleetCollector(store))
    return chosen


def test_the_collector_reads_dead_letters_and_lanes_from_redis_at_each_scrape(
    store: redis.Redis, registry: CollectorRegistry, notifier: Notifier
) -> None:
    assert value(registry, "teams_notify_dead_letters") == 0
    notifier.notify_user(USER, user_body(), tenant_id=TENANT)
    notifier.notify_user(USER, user_body(), tenant_id=TENANT)
    [lane] = LaneStore(store).lane_ids()
    store.zadd(keys.dead_letters_index(), {"letter-1": 1.0, "letter-2": 2.0})

    assert value(registry, "teams_notify_dead_letters") == 2
    assert value(registry, "teams_notify_lane_requests", lane=lane, state="waiting") == 2
    for state in ("delayed", "handed", "in_flight"):
        assert value(registry, "teams_notify_lane_requests", lane=lane, state=state) == 0


def test_the_collector_yields_no_samples_when_redis_is_unreachable() -> None:
    gone = redis.Redis(port=free_port(), socket_connect_timeout=0.5, decode_responses=True)
    chosen = CollectorRegistry()
    chosen.register(observe.FleetCollector(gone))  # registering reads nothing
    assert value(chosen, "teams_notify_dead_letters") is None
    assert list(observe.FleetCollector(gone).collect()) == []


def test_the_fleet_is_exported_on_the_registry_served(store: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    served = CollectorRegistry()
    monkeypatch.setattr(exporter, "_served", served)
    observe.watch_fleet(store)
    assert observe.served_registry() is served
    assert value(served, "teams_notify_dead_letters") == 0
    observe.watch_fleet(None)
    assert value(served, "teams_notify_dead_letters") is None


@pytest.mark.parametrize(
    ("args", "pool"),
    [
        (["worker", "-P", "prefork", "-c", "4"], "prefork"),
        (["worker", "--pool=processes"], "processes"),
        (["worker", "--pool", "solo"], "solo"),
        (["worker", "-Pprefork"], "prefork"),
        (["worker", "-P", "prefork", "-P", "threads"], "threads"),  # the last one counts, as for Celery
        (["worker", "-c", "4"], "prefork"),  # Celery's default
    ],
)
def test_the_pool_is_read_from_the_command_line(args: list[str], pool: str) -> None:
    assert metricsdir.pool_of(args) == pool


def test_only_a_process_pool_serving_metrics_without_a_directory_needs_a_private_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(metricsdir.ENV, raising=False)
    monkeypatch.delenv(metricsdir.LEGACY_ENV, raising=False)
    assert metricsdir.needs_private_dir(9808, ["worker", "-P", "prefork"])
    assert not metricsdir.needs_private_dir(0, ["worker", "-P", "prefork"])
    assert not metricsdir.needs_private_dir(9808, ["worker", "-P", "threads"])
    monkeypatch.setenv(metricsdir.ENV, str(tmp_path))  # the operator's: respected
    assert not metricsdir.needs_private_dir(9808, ["worker", "-P", "prefork"])


def test_a_worker_removes_the_directory_it_made_and_never_the_operators(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made, given = tmp_path / "made", tmp_path / "given"
    made.mkdir()
    given.mkdir()
    monkeypatch.setenv(metricsdir.ENV, str(made))
    monkeypatch.setenv(metricsdir.OWNER_ENV, str(made))
    with observe.worker_metrics(config.Settings(metrics_port=0)):
        assert made.is_dir()
        assert metricsdir.OWNER_ENV not in os.environ  # the pool's children do not inherit ownership
    assert not made.exists()

    monkeypatch.setenv(metricsdir.ENV, str(given))
    with observe.worker_metrics(config.Settings(metrics_port=0)):
        pass
    assert given.is_dir()


#: A process of a worker under prefork, as far as metrics go: counts, says so, and lives until told to end.
POOL_PROCESS = """
import sys
from worker import metrics
metrics.REQUESTS.labels("recipients", "sent").inc(3)
metrics.WORKER_PROCESSES.set(1)
print("counted", flush=True)
sys.stdin.readline()
"""


def test_the_served_registry_has_every_processs_counts_and_forgets_a_dead_ones_live_gauge(tmp_path: Path) -> None:
    env = {**os.environ, metricsdir.ENV: str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", POOL_PROCESS], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdin is not None
    assert child.stdout.readline().strip() == "counted"
    registry = exporter.pool_registry(str(tmp_path))

    assert value(registry, "teams_notify_requests_total", endpoint="recipients", outcome="sent") == 3
    assert value(registry, "teams_notify_worker_processes") == 1  # alive
    assert value(registry, "process_cpu_seconds_total") is not None  # the serving process's own figures

    child.stdin.close()
    child.wait(timeout=30)
    assert value(registry, "teams_notify_requests_total", endpoint="recipients", outcome="sent") == 3  # kept
    assert value(registry, "teams_notify_worker_processes") is None  # gone with it
    assert not list(tmp_path.glob(f"gauge_live*_{child.pid}.db"))


def test_only_the_live_gauges_of_processes_that_are_gone_are_dropped(tmp_path: Path) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    gone = int(ended.stdout)
    for name in (f"gauge_livesum_{gone}.db", f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")

    assert observe.forget_dead_processes(str(tmp_path)) == [gone]
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"counter_{gone}.db", f"gauge_livesum_{os.getpid()}.db"]
