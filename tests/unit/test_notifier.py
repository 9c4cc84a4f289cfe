"""The producers' Notifier on a real (private) Redis: what it writes, what it refuses, and who can read it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis

from producers import BrokerUnavailable, InvalidNotification, Notifier, UnknownJob, keys
from producers import chunks as stored
from producers.models import Endpoint
from tests.unit.notification_examples import (
    INVALID,
    TENANT,
    USER,
    Invalid,
    bulk_body,
    chat_body,
    team_body,
    user_body,
    user_ids,
)
from worker.jobs import JobStore
from worker.lanes import LaneStore
from worker.sandbox import free_port


def notify(notifier: Notifier, endpoint: Endpoint, target: str | None, body: Any, **options: Any) -> str:
    """The notify_* call of the endpoint."""
    if endpoint is Endpoint.RECIPIENTS:
        return notifier.notify_recipients(body, **options)
    method = getattr(notifier, f"notify_{endpoint.value}")
    return str(method(target, body, **options))


def waiting(store: redis.Redis) -> int:
    """Requests waiting in every lane."""
    return sum(store.zcard(keys.lane(lane)) for lane in store.smembers(keys.lanes()))


def closed_port_url(password: str | None = None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{free_port()}/0"


def test_a_bulk_job_of_5000_is_written_as_50_chunks_and_50_requests_in_its_lane(
    notifier: Notifier, store: redis.Redis
) -> None:
    job_id = notifier.notify_recipients(bulk_body(5_000), tenant_id=TENANT)

    chunks = store.hgetall(keys.job_chunks(job_id))
    assert sorted(chunks, key=int) == [str(i) for i in range(50)]
    recipients = [r for i in range(50) for r in stored.decode(chunks[str(i)])]
    assert all(len(stored.decode(chunk)) <= 100 for chunk in chunks.values())
    assert recipients == bulk_body(5_000)["recipients"]
    assert [r["userId"] for r in recipients] == user_ids(5_000)

    lane = keys.lane_id(TENANT, bulk=True)
    assert store.smembers(keys.lanes()) == {lane}
    assert sorted(store.zrange(keys.lane(lane), 0, -1)) == sorted(keys.request_ref(job_id, i) for i in range(50))
    assert store.llen(keys.QUEUE) == 0, "the scheduler publishes, not the producer"


def test_a_jobs_requests_land_in_its_lane_in_the_same_script_as_its_record(
    notifier: Notifier, store: redis.Redis
) -> None:
    commands: list[dict[str, Any]] = []
    with store.monitor() as monitor:
        job_id = notifier.notify_user(USER, user_body(), idempotency_key="approvals-2026-11-24")
        while not commands or commands[-1]["command"].split()[0] != "SADD":
            commands.append(monitor.next_command())

    lane = keys.lane_id(None, bulk=False)
    by_client = [(c["client_type"], tuple(c["command"].split()[:2])) for c in commands]
    in_script = [command for client, command in by_client if client == "lua"]
    assert [command[0] for client, command in by_client if client != "lua"].count("EVALSHA") == 1
    assert ("HSET", keys.job(job_id)) in in_script
    assert ("ZADD", keys.lane(lane)) in in_script
    assert ("SADD", keys.lanes()) in in_script
    assert ("SET", keys.idempotency("approvals-2026-11-24")) in in_script
    assert store.zrange(keys.lane(lane), 0, -1) == [keys.request_ref(job_id, 0)]


def test_a_bulk_enqueue_whose_commit_fails_leaves_nothing_behind(
    notifier: Notifier, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**_: Any) -> None:
        raise redis.ConnectionError("Redis went away before the commit")

    monkeypatch.setattr(notifier, "_enqueue_script", refuse)
    with pytest.raises(BrokerUnavailable):
        notifier.notify_recipients(bulk_body(30_000))  # 300 slices: staged in two round trips first

    assert store.keys("*") == []
    monkeypatch.undo()
    job_id = notifier.notify_recipients(bulk_body(30_000))  # and the same enqueue, committed, is whole
    assert store.hlen(keys.job_chunks(job_id)) == 300
    assert not store.exists(keys.job_staged(job_id))
    assert store.ttl(keys.job_chunks(job_id)) == -1


def test_a_jobs_requests_are_ready_at_once_even_when_the_producers_clock_runs_ahead(
    notifier: Notifier, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 120)  # the backend's host is 2 min fast
    job_id = notifier.notify_user(USER, user_body())
    monkeypatch.undo()

    lane = keys.lane_id(None, bulk=False)
    assert store.zscore(keys.lane(lane), keys.request_ref(job_id, 0)) <= LaneStore(store).now()


def test_a_bulk_jobs_record_holds_the_body_without_its_recipients(notifier: Notifier, store: redis.Redis) -> None:
    body = bulk_body(250)
    job_id = notifier.notify_recipients(body, tenant_id=TENANT)

    job = JobStore(store).load(job_id)
    assert job is not None
    del body["recipients"]
    assert job.body == body
    assert (job.bulk, job.requests_total, job.tenant_id) == (True, 3, TENANT)
    assert job.path == "/teamwork/sendActivityNotificationToRecipients"


def test_a_new_bulk_jobs_status_is_queued_with_its_counts(notifier: Notifier) -> None:
    job_id = notifier.notify_recipients(bulk_body(5_000))

    assert notifier.status(job_id) == {
        "job_id": job_id,
        "state": "queued",
        "requests": {"total": 50, "sent": 0, "dead_lettered": 0, "cancelled": 0, "pending": 50},
        "recipients": {"total": 5000, "sent": 0, "dead_lettered": 0, "cancelled": 0, "pending": 5000},
    }


@pytest.mark.parametrize(
    ("endpoint", "target", "body"),
    [
        (Endpoint.USER, USER, user_body()),
        (Endpoint.CHAT, "19:d65713bc498c4a428c71ef9353e6ce20@thread.v2", chat_body()),
        (Endpoint.TEAM, "e8bece96-d393-4b9b-b8da-69cedef1a7e7", team_body()),
    ],
)
def test_a_single_sends_status_counts_one_request_and_no_recipients(
    notifier: Notifier, store: redis.Redis, endpoint: Endpoint, target: str, body: dict[str, Any]
) -> None:
    job_id = notify(notifier, endpoint, target, body)

    status = notifier.status(job_id)
    assert status == {
        "job_id": job_id,
        "state": "queued",
        "requests": {"total": 1, "sent": 0, "dead_lettered": 0, "cancelled": 0, "pending": 1},
        "recipients": None,
    }
    assert json.loads(json.dumps(status)) == status
    job = JobStore(store).load(job_id)
    assert job is not None
    assert (job.body, job.path) == (body, endpoint.path(target))


def test_duplicate_recipients_are_counted_once(notifier: Notifier) -> None:
    body = bulk_body(150)
    body["recipients"] += [dict(r, userId=r["userId"].upper()) for r in body["recipients"][:60]]

    status = notifier.status(notifier.notify_recipients(body))

    assert status["recipients"]["total"] == 150
    assert status["requests"]["total"] == 2


def test_the_same_idempotency_key_twice_enqueues_one_job(notifier: Notifier, store: redis.Redis) -> None:
    first = notifier.notify_recipients(bulk_body(120), idempotency_key="approvals-2026-11-24")
    second = notifier.notify_recipients(bulk_body(7), idempotency_key="approvals-2026-11-24")

    assert second == first
    assert waiting(store) == 2
    assert store.zcard(keys.jobs_index()) == 1
    assert notifier.status(first)["recipients"]["total"] == 120


def test_different_idempotency_keys_enqueue_different_jobs(notifier: Notifier, store: redis.Redis) -> None:
    first = notifier.notify_user(USER, user_body(), idempotency_key="a")
    second = notifier.notify_user(USER, user_body(), idempotency_key="b")

    assert first != second
    assert waiting(store) == 2


def test_the_same_idempotency_key_from_many_threads_enqueues_one_job(redis_url: str, store: redis.Redis) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def enqueue() -> None:
        notifier = Notifier(redis_url)
        job_id = notifier.notify_user(USER, user_body(), idempotency_key="race")
        notifier.close()
        with lock:
            ids.append(job_id)

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == 1
    assert waiting(store) == 1


@pytest.mark.parametrize("case", INVALID, ids=str)
def test_an_invalid_body_enqueues_nothing(notifier: Notifier, store: redis.Redis, case: Invalid) -> None:
    notifier.notify_user(USER, user_body())
    before = (store.dbsize(), waiting(store))

    with pytest.raises(InvalidNotification):
        notify(notifier, case.endpoint, case.target, case.fresh_body(), idempotency_key="key")

    assert (store.dbsize(), waiting(store)) == before
    assert store.get(keys.idempotency("key")) is None


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"tenant_id": "not a tenant"}, "tenant_id"),
        ({"tenant_id": "common"}, "tenant_id"),
        ({"tenant_id": 42}, "tenant_id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 257}, "idempotency_key"),
        ({"idempotency_key": 42}, "idempotency_key"),
    ],
)
def test_an_invalid_option_enqueues_nothing(
    notifier: Notifier, store: redis.Redis, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidNotification) as caught:
        notifier.notify_recipients(bulk_body(3), **options)

    assert caught.value.field == field
    assert store.dbsize() == 0


def test_a_tenant_given_by_domain_is_accepted(notifier: Notifier, store: redis.Redis) -> None:
    job_id = notifier.notify_user(USER, user_body(), tenant_id="contoso.onmicrosoft.com")

    job = JobStore(store).load(job_id)
    assert job is not None
    assert job.tenant_id == "contoso.onmicrosoft.com"


def test_an_unreachable_redis_is_a_broker_error_and_nothing_is_enqueued() -> None:
    notifier = Notifier(closed_port_url())

    with pytest.raises(BrokerUnavailable, match="nothing was enqueued"):
        notifier.notify_recipients(bulk_body(3))
    with pytest.raises(BrokerUnavailable):
        notifier.status("4d1f3c0e-0000-4000-8000-000000000000")


def test_a_broker_error_never_shows_the_redis_password() -> None:
    notifier = Notifier(closed_port_url(password="s3cr3t-pass"))

    with pytest.raises(BrokerUnavailable) as caught:
        notifier.notify_user(USER, user_body())

    assert "s3cr3t-pass" not in str(caught.value)
    assert "s3cr3t-pass" not in repr(caught.value)


def test_a_redis_that_refuses_the_writes_leaves_nothing_half_written(notifier: Notifier, store: redis.Redis) -> None:
    # With maxmemory at 1 byte Redis refuses every write: EXEC is aborted, so nothing of the job may remain.
    store.config_set("maxmemory", 1)
    try:
        with pytest.raises(BrokerUnavailable):
            notifier.notify_recipients(bulk_body(250), idempotency_key="half")
    finally:
        store.config_set("maxmemory", 0)

    assert store.dbsize() == 0
    assert notifier.notify_recipients(bulk_body(250), idempotency_key="half")
    assert waiting(store) == 3


def test_an_unknown_job_is_a_clear_error(notifier: Notifier) -> None:
    with pytest.raises(UnknownJob, match="no-such-job") as caught:
        notifier.status("no-such-job")

    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize("url", ["redis://:secret@host:1/0", "redis://user:secret@host:1/0", "rediss://:secret@h/2"])
def test_a_notifiers_repr_never_shows_the_redis_password(url: str) -> None:
    text = repr(Notifier(url))

    assert "secret" not in text
    assert "host" in text or "h/2" in text


def test_the_redis_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMS_NOTIFY_REDIS_URL", "redis://envhost:6390/3")

    assert "envhost:6390/3" in repr(Notifier())


def test_importing_producers_loads_neither_the_worker_nor_its_dependencies() -> None:
    code = (
        "import json, sys\n"
        "import producers\n"
        "from producers import Notifier\n"
        "Notifier('redis://127.0.0.1:1/0')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)

    loaded = set(json.loads(result.stdout))
    assert "producers" in loaded
    assert loaded.isdisjoint({"worker", "msal", "httpx", "celery", "kombu", "tenacity", "requests"})
