"""The fleet's Celery broker and result backend: one Redis, Redis through Sentinel, or RabbitMQ.

A broker message is only how a ready request reaches a worker (see `worker.lanes`), so the broker's job is
small; what each gives the fleet:

- **Redis** (the default: the store's URL). Messages a dead worker held come back after the visibility
  timeout; the scheduler does not wait for them (its own lease and hand timeouts bring requests back).
  Over TLS (`rediss://`) kombu and the result backend verify the server as every other client does
  (`producers.tls`), and a worker whose Redis presents a certificate it cannot trust exits at start with
  one line (`verify_tls`) rather than retry forever.
- **Redis through Sentinel** (`redis+sentinel://...`): the same, and kombu's `sentinel://` transport follows
  a failover to the new master.
- **RabbitMQ** (`amqp://`, `amqps://`; several nodes joined by `;`): the fleet's two queues are durable
  quorum queues (replicated on every node of a cluster, on disk before they are confirmed), publishes wait
  for the broker's confirm, and a dead worker's messages are redelivered the moment its connection drops.

Admin results always go through Celery's Redis result backend on the store (through Sentinel when the store
is), so nothing of AMQP reaches `producers`.

RabbitMQ's `consumer_timeout` (30 minutes by default) closes a channel whose delivery stays unacknowledged
that long. Tasks are acknowledged when they end (`acks_late`), and a send ends within about two minutes at
worst (bounded HTTP and token waits, two minutes of patience to record an outcome while Redis is away); the
fleet uses no countdown or ETA, and a worker prefetches no more than its free slots. The timeout is kept
(15 minutes in `deploy/`): should it ever fire, the channel's messages are redelivered and each copy finds
its request already taken.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import redis
from celery import Celery
from celery.signals import celeryd_init
from kombu import Exchange, Queue
from kombu.transport import redis as kombu_redis

from producers import keys
from producers.connection import SentinelURL, connect, describe, is_sentinel, redacted
from producers.errors import TeamsNotifyError
from producers.tls import VerifiedSSLConnection, probe, split_url, unverified_warning
from worker import config
from worker.config import AMQP_SCHEMES, Settings

log = logging.getLogger(__name__)

Kind = Literal["redis", "redis-sentinel", "rabbitmq"]

#: RabbitMQ's queue argument that makes a queue a quorum queue (replicated, durable, poison-message aware).
QUORUM = {"x-queue-type": "quorum"}


def kind(url: str) -> Kind:
    """What a broker URL names."""
    if is_sentinel(url):
        return "redis-sentinel"
    if urlsplit(url.split(";", maxsplit=1)[0].strip()).scheme.lower() in AMQP_SCHEMES:
        return "rabbitmq"
    return "redis"


def celery_url(url: str, variable: str = "TEAMS_NOTIFY_BROKER_URL") -> tuple[str, dict[str, Any]]:
    """The URL kombu and Celery understand for one of ours, and the transport options it needs.

    `redis+sentinel://:pw@h1:p1,h2:p2/master/db` becomes `sentinel://:pw@h1:p1/db;sentinel://:pw@h2:p2/db`
    with `master_name` (and the Sentinels' own password, if any) in the transport options; `unix://` becomes
    kombu's `redis+socket://`; a `rediss://` URL loses its TLS options (`ssl_options` has them: in the URL,
    kombu would take them instead of those options); every other URL is already kombu's.
    """
    if is_sentinel(url):
        target = SentinelURL.parse(url)
        userinfo = ""
        if target.username or target.password:
            userinfo = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
        hosts = [(f"[{host}]" if ":" in host else host, port) for host, port in target.sentinels]
        urls = [f"sentinel://{userinfo}{host}:{port}/{target.db}" for host, port in hosts]
        options: dict[str, Any] = {"master_name": target.master_name}
        if target.sentinel_password:
            options["sentinel_kwargs"] = {"password": target.sentinel_password}
        return ";".join(urls), options
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :], {}
    if kind(url) == "redis":
        return split_url(url, variable)[0], {}
    return url, {}


def ssl_options(url: str, variable: str = "TEAMS_NOTIFY_BROKER_URL") -> dict[str, Any] | None:
    """What kombu (`broker_use_ssl`) and Celery's Redis result backend (`redis_backend_use_ssl`) take for a
    `rediss://` URL: the server verified against `SSL_CERT_FILE` or the system store, its host name checked,
    unless the URL opts out (logged as a warning). None for any other URL."""
    if kind(url) != "redis":
        return None
    _, tls = split_url(url, variable)
    warning = unverified_warning(variable, redacted(url), tls)
    if warning:
        log.warning(warning)
    return tls.options() if tls else None


def verify_tls(settings: Settings) -> None:
    """Connects once to each `rediss://` Redis of the fleet (the store, the broker).

    Raises:
        BrokerUnavailable: one line naming the variable, when a server's certificate cannot be trusted (a
            Redis that is down is left to Celery's retries at start).
    """
    urls = {settings.redis_url: "TEAMS_NOTIFY_REDIS_URL"}
    urls.setdefault(settings.broker, "TEAMS_NOTIFY_BROKER_URL")
    for url, variable in urls.items():
        if kind(url) == "redis":
            probe(url, variable)


@celeryd_init.connect
def _refuse_untrusted_redis(**_: Any) -> None:
    """Before a `teams-notify worker` starts: one line and exit code 2 when its Redis cannot be trusted."""
    try:
        verify_tls(config.load())
    except TeamsNotifyError as exc:
        sys.stderr.write(f"teams-notify: error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(2) from None


class _SafeClose:
    """Makes kombu's Redis channels safe to close after their connection was: when Redis goes away (it
    restarts, or a failover drops the broker connection), kombu may close the channel (and requeue its
    unacknowledged messages) once the transport has let go of its client, and its connection lookup then
    fails with an AttributeError that ends the worker ("Unrecoverable error"). Here that is a connection
    error, which kombu ignores on close; the messages stay unacknowledged until the visibility timeout
    restores them (their requests went back to their lanes long before)."""

    connection: Any

    def _get_pool(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed already")
        return super()._get_pool(asynchronous)  # type: ignore[misc]  # missing from kombu's annotations


class _SharedClient:
    """kombu makes a new `redis.Redis` for every publish, acknowledgement and event (`conn_or_acquire`), and
    building one copies its ~200 response callbacks: a tenth of a worker's CPU. A client over a pool is
    thread-safe, so one is kept per pool (a new pool, after a lost connection, gets a new client)."""

    _shared: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous)  # type: ignore[misc]  # missing from kombu's annotations
        pool = self.pool  # type: ignore[attr-defined]  # kombu's Channel
        shared = self._shared
        if shared is None or shared.connection_pool is not pool:
            shared = self._shared = super()._create_client(False)  # type: ignore[misc]
        return shared


class FleetRedisChannel(_SharedClient, _SafeClose, kombu_redis.Channel):
    """kombu's Redis channel, safe to close after a lost connection; over TLS, a refused certificate is
    explained (`producers.tls`)."""

    connection_class_ssl = VerifiedSSLConnection


class FleetRedisTransport(kombu_redis.Transport):
    """kombu's `redis://` transport with `FleetRedisChannel`."""

    Channel = FleetRedisChannel


class FleetSentinelChannel(_SharedClient, _SafeClose, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, safe to close after a lost connection."""


class FleetSentinelTransport(kombu_redis.SentinelTransport):
    """kombu's `sentinel://` transport with `FleetSentinelChannel`."""

    Channel = FleetSentinelChannel


def fleet_queues() -> list[Queue]:
    """The fleet's two queues on RabbitMQ: durable quorum queues, each bound to its own direct exchange."""
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name, durable=True, queue_arguments=dict(QUORUM))
        for name in (keys.QUEUE, keys.ADMIN_QUEUE)
    ]


def configure(app: Celery, settings: Settings) -> None:
    """Points the app at its broker and at the result backend on the store, with what each needs."""
    broker, broker_options = celery_url(settings.broker)
    backend, backend_options = celery_url(settings.redis_url, "TEAMS_NOTIFY_REDIS_URL")
    app.conf.update(broker_url=broker, result_backend=backend)
    if backend_options:
        app.conf.result_backend_transport_options = backend_options
    backend_ssl = ssl_options(settings.redis_url, "TEAMS_NOTIFY_REDIS_URL")
    if backend_ssl:
        app.conf.redis_backend_use_ssl = backend_ssl
    if kind(settings.broker) == "rabbitmq":
        app.conf.task_queues = fleet_queues()
        # Callbacks go to their caller's queue: declared as Celery declares one by default when it does not
        # exist yet (see `callback_queue` for one that does).
        app.conf.broker_transport_options = {"confirm_publish": True}
        # Celery binds quorum queues to its native delayed-delivery exchanges at start; the fleet never
        # delays a message, so those are kept light (classic queues).
        app.conf.broker_native_delayed_delivery_queue_type = "classic"
        return
    if kind(settings.broker) == "redis-sentinel":
        app.conf.broker_transport = f"{__name__}:FleetSentinelTransport"
    elif broker.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = f"{__name__}:FleetRedisTransport"
    broker_ssl = ssl_options(settings.broker) if settings.broker != settings.redis_url else backend_ssl
    if broker_ssl:
        app.conf.broker_use_ssl = broker_ssl
    app.conf.broker_transport_options = {
        **broker_options,
        # A message a dead worker held goes back to the queue after this long; by then the scheduler has
        # handed its request out again, so the restored copy finds it taken and does nothing.
        "visibility_timeout": settings.visibility_timeout,
        # Sweep for such messages every tenth of the timeout (kombu's default is every 100 s or so).
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
    }


class CallbackQueues:
    """Where a job's callback is published, per queue name, so that a queue the caller declared is never
    declared again with other arguments (on RabbitMQ a quorum queue declared as classic is an error)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self._app = app
        self._rabbitmq = kind(settings.broker) == "rabbitmq"
        self._known: dict[str, str | Queue] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str | Queue:
        """The name itself (Celery declares the queue if missing), or on RabbitMQ, for a queue that exists,
        that queue through the default exchange, not declared."""
        if not self._rabbitmq:
            return name
        with self._lock:
            if name not in self._known:
                self._known[name] = (
                    Queue(name, Exchange(""), routing_key=name, no_declare=True) if self._exists(name) else name
                )
            return self._known[name]

    def _exists(self, name: str) -> bool:
        with self._app.connection_for_write() as conn:
            return _message_count(conn, name) is not None


def queue_depths(settings: Settings) -> dict[str, int | None]:
    """Messages waiting in the fleet's two queues, read from the broker (None for one it cannot tell)."""
    names = (keys.QUEUE, keys.ADMIN_QUEUE)
    if kind(settings.broker) != "rabbitmq":
        client = connect(settings.broker, "TEAMS_NOTIFY_BROKER_URL")
        try:
            return {name: int(client.llen(name)) for name in names}
        finally:
            client.close()
    from kombu import Connection  # noqa: PLC0415 - only for RabbitMQ

    with Connection(settings.broker, connect_timeout=5) as conn:
        return {name: _message_count(conn, name) for name in names}


def _message_count(conn: Any, name: str) -> int | None:
    """Messages in a RabbitMQ queue, None if it does not exist (a passive declare, on a channel of its own:
    the broker closes the channel that asked for a missing queue)."""
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)
    except conn.channel_errors:
        return None
    finally:
        with contextlib.suppress(Exception):  # already closed by the broker after a 404
            channel.close()


def layout(settings: Settings) -> dict[str, Any]:
    """Which broker and store the fleet uses, without credentials; through Sentinel, the current master."""
    broker: dict[str, Any] = {"kind": kind(settings.broker), "url": redacted(settings.broker)}
    if broker["kind"] == "rabbitmq":
        broker["queues"] = "quorum"
    elif broker["kind"] == "redis-sentinel":
        broker = describe(settings.broker)
    store = describe(settings.redis_url)
    store["write_wait"] = str(settings.replica_wait)
    return {"broker": broker, "store": store}
