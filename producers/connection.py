"""The one way teams-notify connects to Redis, shared by the producers, the worker and the CLI.

A store URL names one Redis (`redis://`, `rediss://`, `unix://`) or, for a store that survives losing its
master, the Sentinels that watch one (`redis+sentinel://[:password@]host:port[,host:port...]/master_name[/db]`).
Through Sentinels, every connection asks them where the master is, and each command rides out a failover:
a connection error, a timeout or a demoted master (READONLY) is retried with jittered backoff for up to
`FAILOVER_WINDOW` seconds, the master looked up again each time. Lua scripts are reloaded by redis-py
when the new master does not know them (NOSCRIPT), and every script of the fleet is safe to run again.
`producers.sentinel` reads such a URL, and `producers.failover` holds how a failover is ridden out.

A producer's enqueue can also wait until the job is on replicas (`confirm_replicated`, redis' `WAIT`), so
that a failover right after the producer was told "enqueued" cannot lose the job. That is the default
through Sentinels; `TEAMS_NOTIFY_REDIS_WAIT` sets it (`ReplicaWait.parse`, in `producers.replication`).

Over TLS (`rediss://`, Azure Cache for Redis), the server's certificate is verified against `SSL_CERT_FILE` or
the system store and its host name checked; `producers.tls` holds how, and the URL options that change it.

The names of those modules that callers use are importable from here too, as before they moved.
"""

from __future__ import annotations

import logging
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

from producers import keys
from producers.errors import BrokerUnavailable, ConfigurationError
from producers.failover import (
    FAILOVER_ATTEMPTS,
    FAILOVER_BACKOFF,
    FAILOVER_WINDOW,
    MASTER_CHECK_EVERY,
    FailoverRetry,
    WatchedSentinelPool,
)
from producers.redaction import redacted
from producers.replication import DEFAULT_WAIT_REPLICAS, DEFAULT_WAIT_TIMEOUT, ReplicaWait
from producers.sentinel import DEFAULT_SENTINEL_PORT, SENTINEL_SCHEME, SentinelURL, is_sentinel
from producers.tls import split_url, unverified_warning

__all__ = [
    "DEFAULT_REDIS_URL",
    "DEFAULT_SENTINEL_PORT",
    "DEFAULT_WAIT_REPLICAS",
    "DEFAULT_WAIT_TIMEOUT",
    "FAILOVER_ATTEMPTS",
    "FAILOVER_BACKOFF",
    "FAILOVER_WINDOW",
    "MASTER_CHECK_EVERY",
    "SENTINEL_SCHEME",
    "FailoverRetry",
    "ReplicaWait",
    "SentinelURL",
    "StoreClient",
    "WatchedSentinelPool",
    "check_store_url",
    "confirm_replicated",
    "connect",
    "describe",
    "is_sentinel",
    "redacted",
]

#: Where the producers find Redis when neither `redis_url=` nor `TEAMS_NOTIFY_REDIS_URL` says.
DEFAULT_REDIS_URL = "redis://localhost:6379/0"

_STORE_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
log = logging.getLogger(__name__)


def check_store_url(url: str, variable: str = "TEAMS_NOTIFY_REDIS_URL") -> None:
    """Checks a store URL's form; a ConfigurationError naming the variable (and no password) if it is wrong."""
    if is_sentinel(url):
        SentinelURL.parse(url, variable)
        return
    scheme = urlsplit(url).scheme
    if scheme not in _STORE_SCHEMES:
        raise ConfigurationError(f"{variable}={redacted(url)!r} is not a redis:// or {SENTINEL_SCHEME}:// URL")
    split_url(url, variable)  # its TLS options (`producers.tls`)


class StoreClient(redis.Redis):
    """A Redis client that knows how a producer's writes must be confirmed, and closes its Sentinels with it."""

    replica_wait: ReplicaWait = ReplicaWait()
    sentinels: Sentinel | None = None

    def close(self) -> None:
        """Closes the pool, and the connections to the Sentinels if any."""
        super().close()
        if self.sentinels is not None:
            self.sentinels.close()


def connect(url: str, variable: str = "TEAMS_NOTIFY_REDIS_URL", *, wait: ReplicaWait | None = None) -> redis.Redis:
    """A Redis client for the URL (one Redis, or the master its Sentinels name); a malformed URL is a
    configuration error naming the variable. `wait` defaults to what `TEAMS_NOTIFY_REDIS_WAIT` says.
    Over TLS (`rediss://`) the server's certificate and host name are checked (`producers.tls`)."""
    replica_wait = wait if wait is not None else ReplicaWait.from_environment(url)
    if is_sentinel(url):
        target = SentinelURL.parse(url, variable)
        sentinel = target.sentinel()
        client: StoreClient = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis-py 8.2
            target.master_name,
            redis_class=StoreClient,
            connection_pool_class=WatchedSentinelPool,
            db=target.db,
            username=target.username,
            password=target.password,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=10,
            health_check_interval=30,
            retry=FailoverRetry(),
        )
        client.sentinels = sentinel
    else:
        base, tls = split_url(url, variable)  # a rediss:// server is verified (`producers.tls`)
        warning = unverified_warning(variable, redacted(url), tls)
        if warning:
            log.warning(warning)
        options = tls.client_options() if tls else {}
        try:
            client = cast(
                StoreClient,
                StoreClient.from_url(
                    base,
                    decode_responses=True,
                    socket_connect_timeout=5,
                    socket_timeout=30,
                    health_check_interval=30,
                    **options,
                ),
            )
        except ValueError as exc:
            raise ConfigurationError(f"{variable}: {exc}") from None
    client.replica_wait = replica_wait
    return client


def confirm_replicated(client: redis.Redis, job_key: str) -> bool:
    """After a producer's enqueue: waits until the replicas its `ReplicaWait` asks for hold it.

    `WAIT` counts the writes of its own connection, and the pool may hand out another one, so a small write
    goes first on the same connection: once a replica has it, it has everything the master had before. If a
    failover came between the enqueue and this check, both ran on the new master, which may lack the job:
    False then, and the producer writes it again (its id and contents are its own, so that is harmless).

    Raises:
        BrokerUnavailable: fewer replicas than asked acknowledged in time (the job is on the master, and may
            be lost if it fails now; enqueue again with the same idempotency_key to be sure).
    """
    wait = client.replica_wait if isinstance(client, StoreClient) else ReplicaWait()
    if wait.replicas <= 0:
        return True
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.replication_probe(), job_key, px=60_000)
    pipe.wait(wait.replicas, int(wait.timeout * 1000))
    pipe.exists(job_key)
    _, acknowledged, exists = pipe.execute()
    if not exists:
        return False
    if int(acknowledged) < wait.replicas:
        raise BrokerUnavailable(
            f"the job is on the Redis master but {acknowledged} of the {wait.replicas} replica(s) asked for "
            f"(TEAMS_NOTIFY_REDIS_WAIT) confirmed it within {wait.timeout:g}s; enqueue it again with the same "
            "idempotency_key to be sure it survives a failover"
        )
    return True


def describe(url: str) -> dict[str, Any]:
    """What a status shows of a store or Redis broker: its kind, its URL without credentials and, through
    Sentinels, the current master (None when none of them knows one)."""
    document: dict[str, Any] = {"kind": "redis", "url": redacted(url)}
    if is_sentinel(url):
        target = SentinelURL.parse(url)
        document["kind"] = "redis-sentinel"
        document["master_name"] = target.master_name
        try:
            host, port = target.master_address()
            document["master"] = f"{host}:{port}"
        except redis.RedisError:
            document["master"] = None
    return document
