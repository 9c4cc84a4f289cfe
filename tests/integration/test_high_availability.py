"""High availability with real servers: a private RabbitMQ node, a Redis master with two replicas and three
Sentinels, `teams-notify worker` processes and the simulator. Everything is started on free ports by these
tests and stopped by them; nothing of the machine's own RabbitMQ or Redis is touched.

- RabbitMQ as the broker (Redis the store): a 10,000-recipient job is delivered once each through durable
  quorum queues; a worker killed with SIGKILL has its requests sent within 15 s (over one Redis too, for
  comparison); the node killed and restarted mid-job loses nothing.
- Redis through Sentinel (as store and broker, and as the store under RabbitMQ): the master is killed
  mid-job, the Sentinels promote a replica, workers and producers carry on, nothing is lost, at most one
  request is sent twice, and a job acknowledged to its producer just before the kill is delivered.

Each run prints its recovery figures (`pytest -s`), and the module a summary of them; the README's come
from there.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Queue

from producers import Notifier, keys
from producers.connection import connect
from tests.integration.conftest import CLIENT_ID, TENANT, SimulatorControl, wait_until_ended
from tests.integration.test_pipeline import bulk_body, users
from worker import sandbox
from worker.simulator import Simulator

pytestmark = pytest.mark.integration

#: The issue's bound: a killed worker's requests go out within this long of the kill.
WORKER_RECOVERY_BOUND = 15.0
#: Requests a job must have sent before something is killed (of its 100), so that the kill falls mid-job.
UNDER_WAY = 20
SUMMARY: list[str] = []
LAYOUTS = {"rabbitmq": "RabbitMQ + Redis", "redis": "one Redis"}


# --- servers and fleets ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    if SUMMARY:
        print("\nhigh availability, measured:\n  " + "\n  ".join(SUMMARY))  # the README's figures


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.RabbitMQNode]:
    node = sandbox.RabbitMQNode(tmp_path_factory.mktemp("rabbitmq"))
    try:
        yield node.start()
    finally:
        node.stop()


@pytest.fixture
def broker(rabbitmq: sandbox.RabbitMQNode) -> str:
    """The RabbitMQ node's URL, its queues emptied of an earlier test's messages."""
    with Connection(rabbitmq.url) as conn:
        for name in (keys.QUEUE, keys.ADMIN_QUEUE):
            with contextlib.suppress(*conn.channel_errors):  # not declared yet
                conn.channel().queue_purge(name)
    return rabbitmq.url


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[sandbox.RedisSentinelCluster]:
    """A master, two replicas (so that a failover leaves the new master one) and three Sentinels."""
    cluster = sandbox.RedisSentinelCluster(tmp_path / "sentinel", replicas=2)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


Start = Callable[..., list[sandbox.WorkerProcess]]


@pytest.fixture
def start_fleet(simulator: Simulator, tmp_path: Path) -> Iterator[Start]:
    """Starts workers over a broker and a store; stops them all at the end."""
    started: list[sandbox.WorkerProcess] = []

    def start(broker_url: str, store_url: str, count: int = 2, *args: str) -> list[sandbox.WorkerProcess]:
        env = sandbox.simulator_env(
            simulator,
            store_url,
            tenant_id=TENANT,
            client_id=CLIENT_ID,
            client_secret="integration-secret",
            broker_url=broker_url,
            metrics_port="0",
            rate_limits="off",
        )
        workers = [
            sandbox.WorkerProcess(env, f"ha{len(started) + i}", tmp_path / f"ha{len(started) + i}.log", list(args))
            for i in range(count)
        ]
        for w in workers:
            w.start()
        started.extend(workers)
        sandbox.wait_ready(broker_url, [w.node for w in workers], timeout=60)
        return workers

    yield start
    for w in started:
        w.stop()


# --- watching ----------------------------------------------------------------------------------------------


def received(record: dict[str, Any]) -> float:
    """When the simulator accepted a request (epoch seconds)."""
    return datetime.fromisoformat(str(record["received_at"]).replace("Z", "+00:00")).timestamp()


def request_key(record: dict[str, Any]) -> str:
    """What tells one request of a job from another: a bulk request's recipients, else its path."""
    recipients = record["body"].get("recipients")
    return ",".join(r["userId"] for r in recipients) if recipients else str(record["path"])


def duplicated(graph: SimulatorControl) -> int:
    """Requests Graph accepted more than once."""
    return sum(count - 1 for count in Counter(request_key(r) for r in graph.requests()).values())


def in_hand(store: redis.Redis) -> set[str]:
    """Refs handed to a worker or in flight in any lane now."""
    refs: set[str] = set()
    for lane in cast(set[str], store.smembers(keys.lanes())):
        refs |= set(cast(list[str], store.zrange(keys.lane_handed(lane), 0, -1)))
        refs |= set(cast(list[str], store.zrange(keys.lane_in_flight(lane), 0, -1)))
    return refs


def wait_until_sent(notifier: Notifier, job_id: str, requests: int = UNDER_WAY) -> None:
    deadline = time.monotonic() + 60
    while notifier.status(job_id)["requests"]["sent"] < requests:
        assert time.monotonic() < deadline, "the job did not get under way within 60s"
        time.sleep(0.02)


def seconds_until_ended(store: redis.Redis, refs: set[str], since: float, timeout: float = 60) -> float:
    """Seconds after `since` (epoch) when the last of these refs had ended (an outcome recorded)."""
    deadline = time.monotonic() + timeout
    waiting = set(refs)
    while waiting and time.monotonic() < deadline:
        for ref in list(waiting):
            job_id, _, index = ref.rpartition(":")
            if store.hexists(keys.job_outcomes(job_id), index):
                waiting.discard(ref)
        time.sleep(0.05)
    assert not waiting, f"{len(waiting)} request(s) held at the kill had not ended {timeout:.0f}s later"
    return time.time() - since


def assert_delivered(graph: SimulatorControl, everyone: list[str], *, at_most_twice: int) -> int:
    """Every user reached; returns how many requests were sent twice (and checks the bound)."""
    delivered = graph.delivered()
    assert set(everyone) <= set(delivered), f"{len(set(everyone) - set(delivered))} users never reached"
    twice = duplicated(graph)
    assert twice <= at_most_twice, f"{twice} requests sent twice"
    return twice


# --- RabbitMQ as the broker --------------------------------------------------------------------------------


def test_over_rabbitmq_a_10000_recipient_job_is_delivered_once_each_through_durable_quorum_queues(
    broker: str, redis_url: str, start_fleet: Start, graph: SimulatorControl, rabbitmq: sandbox.RabbitMQNode
) -> None:
    workers = start_fleet(broker, redis_url, 2)
    with Connection(broker) as conn:  # the backend's own callback queue, a quorum queue it declared itself
        Queue("backend-ha", Exchange("backend-ha"), "backend-ha", queue_arguments={"x-queue-type": "quorum"})(
            conn.channel()
        ).declare()
    notifier = Notifier(redis_url)
    everyone = users(10_000, "ha-once")

    job_id = notifier.notify_recipients(bulk_body(everyone), callback="backend.done", callback_queue="backend-ha")
    [status] = wait_until_ended(notifier, [job_id])

    assert status["state"] == "completed"
    assert status["recipients"]["sent"] == 10_000
    delivered = graph.delivered()
    assert set(delivered) == set(everyone)
    assert set(delivered.values()) == {1}
    assert len(graph.requests()) == 100
    with Connection(broker) as conn:
        for name in (keys.QUEUE, keys.ADMIN_QUEUE):  # a quorum queue cannot be declared as a classic one
            with pytest.raises(conn.channel_errors, match="x-queue-type"):
                conn.channel().queue_declare(
                    name, durable=True, auto_delete=False, arguments={"x-queue-type": "classic"}
                )
        deadline = time.monotonic() + 15
        while conn.channel().queue_declare("backend-ha", passive=True).message_count < 1:
            assert time.monotonic() < deadline, "the callback never reached the backend's quorum queue"
            time.sleep(0.1)
    # Another backend calls an admin task through RabbitMQ; the result comes back through Redis.
    backend = Celery(broker=broker, backend=redis_url)
    backend.conf.task_create_missing_queue_type = "quorum"
    try:
        fleet = backend.send_task("teams_notify.admin.status", queue=keys.ADMIN_QUEUE).get(timeout=30)
    finally:
        backend.close()
    assert fleet["broker"] == {"kind": "rabbitmq", "url": f"amqp://127.0.0.1:{rabbitmq.port}//", "queues": "quorum"}
    assert fleet["store"] == {"kind": "redis", "url": redis_url, "write_wait": "off"}
    assert fleet["queues"] == {keys.QUEUE: 0, keys.ADMIN_QUEUE: 0}
    assert set(fleet["workers"]) == {w.node for w in workers}
    notifier.close()


@pytest.mark.parametrize("layout", ["rabbitmq", "redis"])
def test_a_worker_killed_mid_job_has_its_requests_sent_within_15s(
    layout: str, request: pytest.FixtureRequest, redis_url: str, start_fleet: Start, graph: SimulatorControl
) -> None:
    # Over RabbitMQ the dead worker's messages come back at once; over Redis only after the visibility
    # timeout. Neither is waited for: its requests come back when their leases run out.
    broker_url = request.getfixturevalue("broker") if layout == "rabbitmq" else redis_url
    graph.configure(latency_ms=400)  # every request is in flight a while: the kill finds some
    doomed, _ = start_fleet(broker_url, redis_url, 2, "-c", "4")
    notifier = Notifier(redis_url)
    store = connect(redis_url)
    everyone = users(10_000, "ha-kill")
    job_id = notifier.notify_recipients(bulk_body(everyone))
    wait_until_sent(notifier, job_id)

    held = in_hand(store)
    doomed.signal(signal.SIGKILL)
    killed = time.time()
    recovery = seconds_until_ended(store, held, killed)
    [status] = wait_until_ended(notifier, [job_id])

    assert status["state"] == "completed"
    assert held
    assert recovery <= WORKER_RECOVERY_BOUND
    twice = assert_delivered(graph, everyone, at_most_twice=4)  # at most what the dead worker had on the wire
    SUMMARY.append(
        f"{LAYOUTS[layout]}, worker SIGKILL: its {len(held)} held request(s) all sent {recovery:.1f}s after the kill "
        f"(bound {WORKER_RECOVERY_BOUND:.0f}s); {twice} sent twice"
    )
    store.close()
    notifier.close()


def test_over_rabbitmq_the_node_killed_and_restarted_mid_job_loses_nothing(
    broker: str, redis_url: str, start_fleet: Start, graph: SimulatorControl, rabbitmq: sandbox.RabbitMQNode
) -> None:
    graph.configure(latency_ms=200)
    start_fleet(broker, redis_url, 2, "-c", "4")
    notifier = Notifier(redis_url)
    everyone = users(10_000, "ha-rabbit")
    job_id = notifier.notify_recipients(bulk_body(everyone))
    wait_until_sent(notifier, job_id)

    rabbitmq.kill()
    killed = time.time()
    rabbitmq.restart()
    back = time.time()
    [status] = wait_until_ended(notifier, [job_id], timeout=150)

    assert status["state"] == "completed"
    assert status["recipients"]["sent"] == 10_000
    twice = assert_delivered(graph, everyone, at_most_twice=8)
    resumed = min(t for t in map(received, graph.requests()) if t > back) - back
    SUMMARY.append(
        f"RabbitMQ + Redis, RabbitMQ SIGKILL then restart: node back {back - killed:.1f}s after the kill, "
        f"deliveries resumed {resumed:.1f}s after that; nothing lost, {twice} sent twice"
    )
    notifier.close()


# --- Redis through Sentinel --------------------------------------------------------------------------------


class Producer(threading.Thread):
    """Enqueues one job in a thread of its own, so that the test can watch the failover meanwhile."""

    def __init__(self, notifier: Notifier, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.notifier, self.body = notifier, body
        self.job_id: str | None = None
        self.error: BaseException | None = None
        self.done_at = 0.0

    def start(self) -> Producer:
        super().start()
        return self

    def run(self) -> None:
        try:
            self.job_id = self.notifier.notify_recipients(self.body)
        except BaseException as exc:  # reported by result(), in the test's thread
            self.error = exc
        self.done_at = time.time()

    def result(self, since: float) -> tuple[str, float]:
        """The job's id and how long after `since` the producer was told it was enqueued."""
        self.join(60)
        assert self.error is None, f"the producer failed: {self.error!r}"
        assert self.job_id is not None, "the producer was still waiting 60s later"
        return self.job_id, self.done_at - since


@pytest.mark.parametrize("layout", ["redis-sentinel", "rabbitmq+redis-sentinel"])
def test_the_master_killed_mid_job_is_replaced_by_a_replica_and_nothing_is_lost(
    layout: str,
    request: pytest.FixtureRequest,
    sentinels: sandbox.RedisSentinelCluster,
    start_fleet: Start,
    graph: SimulatorControl,
) -> None:
    broker_url = request.getfixturevalue("broker") if layout.startswith("rabbitmq") else sentinels.url
    graph.configure(latency_ms=200)
    start_fleet(broker_url, sentinels.url, 2, "-c", "4")
    notifier = Notifier(sentinels.url)
    everyone = users(10_000, f"ha-{layout}")
    big = notifier.notify_recipients(bulk_body(everyone))
    wait_until_sent(notifier, big)

    acknowledged = notifier.notify_recipients(bulk_body(users(50, f"ha-{layout}-acked")))  # on a replica too
    old = sentinels.kill_master()
    killed = time.time()
    producer = Producer(notifier, bulk_body(users(50, f"ha-{layout}-after"))).start()  # at once, during the failover
    sentinels.wait_for_failover(old)
    promoted = time.time() - killed
    after, enqueued_after = producer.result(killed)
    statuses = wait_until_ended(notifier, [big, acknowledged, after], timeout=150)

    assert [s["state"] for s in statuses] == ["completed"] * 3
    assert [s["recipients"]["sent"] for s in statuses] == [10_000, 50, 50]
    twice = assert_delivered(
        graph, [*everyone, *users(50, f"ha-{layout}-acked"), *users(50, f"ha-{layout}-after")], at_most_twice=1
    )
    # Requests on the wire at the kill end within the latency; one accepted later was claimed after the failover.
    resumed = min(t for t in map(received, graph.requests()) if t > killed + 0.5) - killed
    SUMMARY.append(
        f"{layout}, master SIGKILL: replica promoted {promoted:.1f}s after the kill, producer's enqueue returned "
        f"after {enqueued_after:.1f}s, deliveries resumed after {resumed:.1f}s; nothing lost, {twice} sent twice"
    )
    notifier.close()
