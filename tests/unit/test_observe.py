"""What operators see: JSON log lines with their fields, bounded tenant labels, the fleet read at each scrape."""

from __future__ import annotations

import json
import logging

import pytest
import redis
from prometheus_client import CollectorRegistry

from producers import Notifier, keys
from tests.unit.notification_examples import TENANT, USER, user_body
from worker import observe
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
    monkeypatch.setattr(observe, "_tenants", set())
    names = [observe.tenant_label(f"tenant-{i}") for i in range(observe.MAX_TENANT_LABELS + 10)]
    assert names[: observe.MAX_TENANT_LABELS] == [f"tenant-{i}" for i in range(observe.MAX_TENANT_LABELS)]
    assert set(names[observe.MAX_TENANT_LABELS :]) == {observe.OTHER_TENANT}
    assert observe.tenant_label("tenant-0") == "tenant-0"  # one seen first keeps its label
    assert observe.tenant_label(None) == observe.OTHER_TENANT


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
