"""The one way teams-notify connects to Redis, shared by the producers, the worker and the CLI.

A store URL names one Redis (`redis://`, `rediss://`, `unix://`) or, for a store that survives losing its
master, the Sentinels that watch one (`redis+sentinel://[:password@]host:port[,host:port...]/master_name[/db]`).
Through Sentinels, every connection asks them where the master is, and each command rides out a failover:
a connection error, a timeout or a demoted master (READONLY) is retried with jittered backoff for up to
`FAILOVER_WINDOW` seconds, the master looked up again each time. Lua scripts are reloaded by redis-py
when the new master does not know them (NOSCRIPT), and every script of the fleet is safe to run again.

A producer's enqueue can also wait until the job is on replicas (`confirm_replicated`, redis' `WAIT`), so
that a failover right after the producer was told "enqueued" cannot lose the job. That is the default
through Sentinels; `TEAMS_NOTIFY_REDIS_WAIT` sets it (`ReplicaWait.parse`).

Over TLS (`rediss://`, Azure Cache for Redis), the server's certificate is verified against `SSL_CERT_FILE` or
the system store and its host name checked; `producers.tls` holds how, and the URL options that change it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from producers import keys
from producers.errors import BrokerUnavailable, ConfigurationError
from producers.tls import split_url, unverified_warning

#: Where the producers find Redis when neither `redis_url=` nor `TEAMS_NOTIFY_REDIS_URL` says.
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: The scheme of a store reached through Redis Sentinel.
SENTINEL_SCHEME = "redis+sentinel"
#: A Sentinel's port when the URL gives none.
DEFAULT_SENTINEL_PORT = 26379
#: Seconds a command through Sentinels keeps retrying while the master is away (a failover takes a few).
FAILOVER_WINDOW = 30.0
#: Most attempts of one command in that window; the backoff between two grows from 50 ms to 1 s, jittered.
FAILOVER_ATTEMPTS = 60
FAILOVER_BACKOFF = (0.05, 1.0)
#: How often a client through Sentinels asks them where the master is, besides when it connects.
MASTER_CHECK_EVERY = 1.0
#: Replicas a producer's enqueue waits for, and how long, through Sentinels unless `TEAMS_NOTIFY_REDIS_WAIT`
#: says otherwise (`0` or `off`: no wait; `N` or `N,SECONDS`).
DEFAULT_WAIT_REPLICAS = 1
DEFAULT_WAIT_TIMEOUT = 5.0

_STORE_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
T = TypeVar("T")
log = logging.getLogger(__name__)


def redacted(url: str) -> str:
    """A URL (Redis, Sentinel or AMQP; several joined by `;`) without credentials or query, fit for a log."""
    if ";" in url:
        return ";".join(redacted(part) for part in url.split(";"))
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", scheme
    rest = rest.rpartition("@")[2]  # user and password, whatever they contain, end at the last '@'
    for mark in "?#":
        rest = rest.partition(mark)[0]
    return f"{scheme}{sep}{rest}"


@dataclass(frozen=True)
class SentinelURL:
    """A parsed `redis+sentinel://` URL: the Sentinels to ask, the master's name, its database and password."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, variable: str = "TEAMS_NOTIFY_REDIS_URL") -> SentinelURL:
        """Parses the URL; a malformed one is a ConfigurationError naming the variable, never the password."""

        def bad(why: str) -> ConfigurationError:
            return ConfigurationError(
                f"{variable}={redacted(url)!r}: {why} (expected {SENTINEL_SCHEME}://[:password@]host:port"
                "[,host:port...]/master_name[/db])"
            )

        scheme, sep, rest = url.strip().partition("://")
        if scheme != SENTINEL_SCHEME or not sep:
            raise bad(f"not a {SENTINEL_SCHEME}:// URL")
        rest, _, query = rest.partition("?")
        userinfo, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        user, _, secret = userinfo.partition(":")  # `:password@`, or `user:password@` for an ACL user
        username, password = unquote(user) or None, unquote(secret) or None
        sentinels = tuple(_host_port(item, bad) for item in hosts.split(","))
        names = [unquote(part) for part in path.split("/") if part]
        if not names or len(names) > 2:
            raise bad("the path must be /master_name or /master_name/db")
        db = 0
        if len(names) == 2:
            if not names[1].isdigit():
                raise bad(f"the database {names[1]!r} is not a number")
            db = int(names[1])
        options = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(options) - {"sentinel_password"})
        if unknown:
            raise bad(f"unknown option {unknown[0]!r} (known: sentinel_password)")
        sentinel_password = options.get("sentinel_password", [None])[-1] or None
        return cls(sentinels, names[0], db, username, password, sentinel_password)

    def sentinel(self, **kwargs: Any) -> Sentinel:
        """A client of the Sentinels: quick to give up on one that is down, so the next is asked at once."""
        sentinel_kwargs: dict[str, Any] = {
            "socket_connect_timeout": 1.0,
            "socket_timeout": 1.0,
            "retry": Retry(EqualJitterBackoff(), 0),
        }
        if self.sentinel_password:
            sentinel_kwargs["password"] = self.sentinel_password
        return Sentinel(list(self.sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    def master_address(self) -> tuple[str, int]:
        """Where the master is now, as the Sentinels say (MasterNotFoundError, a ConnectionError, if none knows)."""
        sentinel = self.sentinel()
        try:
            host, port = sentinel.discover_master(self.master_name)  # type: ignore[no-untyped-call]  # untyped in redis-py
            return str(host), int(port)
        finally:
            sentinel.close()


def _host_port(item: str, bad: Callable[[str], ConfigurationError]) -> tuple[str, int]:
    text = item.strip()
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise bad(f"{item!r} names no Sentinel host")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise bad(f"{item!r} has no valid port")
    return host, int(port_text) if port_text else DEFAULT_SENTINEL_PORT


def is_sentinel(url: str) -> bool:
    """True when the URL names Sentinels rather than one Redis."""
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


def check_store_url(url: str, variable: str = "TEAMS_NOTIFY_REDIS_URL") -> None:
    """Checks a store URL's form; a ConfigurationError naming the variable (and no password) if it is wrong."""
    if is_sentinel(url):
        SentinelURL.parse(url, variable)
        return
    scheme = urlsplit(url).scheme
    if scheme not in _STORE_SCHEMES:
        raise ConfigurationError(f"{variable}={redacted(url)!r} is not a redis:// or {SENTINEL_SCHEME}:// URL")
    split_url(url, variable)  # its TLS options (`producers.tls`)


class FailoverRetry(Retry):
    """redis-py's Retry, bounded in time as well as in attempts: a failover is ridden out, a lost Redis is not
    waited for forever."""

    def __init__(
        self,
        window: float = FAILOVER_WINDOW,
        attempts: int = FAILOVER_ATTEMPTS,
        backoff: tuple[float, float] = FAILOVER_BACKOFF,
    ) -> None:
        base, cap = backoff
        super().__init__(EqualJitterBackoff(cap=cap, base=base), attempts)
        self.window = window

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Calls `do` until it succeeds, a non-retryable error, the attempts or the window run out."""
        deadline = time.monotonic() + self.window
        self._backoff.reset()  # type: ignore[no-untyped-call]  # untyped in redis-py
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                pause = self._backoff.compute(failures)
                if failures > self._retries or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas must hold a producer's enqueue before it returns, and how long to wait for them."""

    replicas: int = 0
    timeout: float = DEFAULT_WAIT_TIMEOUT

    @classmethod
    def parse(cls, value: str | None, sentinel: bool, variable: str = "TEAMS_NOTIFY_REDIS_WAIT") -> ReplicaWait:
        """`auto` (or unset): one replica within 5 s through Sentinels, none with one Redis; `0` or `off`: no
        wait; `N` replicas, or `N,SECONDS` (`1,2.5` or `1,2500ms`)."""
        text = (value or "").strip().lower()
        if text in ("", "auto"):
            return cls(DEFAULT_WAIT_REPLICAS if sentinel else 0)
        if text in ("off", "none"):
            return cls(0)
        count, comma, timeout_text = text.partition(",")
        if not count.strip().isdigit() or (comma and not timeout_text.strip()):
            raise ConfigurationError(f"{variable}={value!r} is not auto, off, N or N,SECONDS (e.g. 1,5s)")
        timeout = _seconds(timeout_text.strip(), variable, value or "") if comma else DEFAULT_WAIT_TIMEOUT
        return cls(int(count), timeout)

    @classmethod
    def from_environment(cls, url: str) -> ReplicaWait:
        """The wait `TEAMS_NOTIFY_REDIS_WAIT` asks for, for a store at this URL."""
        return cls.parse(os.environ.get("TEAMS_NOTIFY_REDIS_WAIT"), is_sentinel(url))

    def __str__(self) -> str:
        return f"{self.replicas},{self.timeout:g}s" if self.replicas else "off"


def _seconds(text: str, variable: str, value: str) -> float:
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2], 0.001
    elif text.endswith("s"):
        text = text[:-1]
    try:
        seconds = float(text) * scale
    except ValueError:
        raise ConfigurationError(f"{variable}={value!r}: {text!r} is not a number of seconds") from None
    if not 0 < seconds <= 60:
        raise ConfigurationError(f"{variable}={value!r}: the timeout must be over 0 and at most 60 seconds")
    return seconds


class WatchedSentinelPool(SentinelConnectionPool):
    """redis-py's pool of connections to the master the Sentinels name, which asks them where the master is
    only when it connects. This one also asks when a connection is taken, at most every
    `MASTER_CHECK_EVERY` seconds: a master the Sentinels have replaced without its clients noticing (a
    second failover, a partition: it still takes writes, which its successor never sees) is left within a
    second, its connections dropped, rather than when it is finally made a replica."""

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK_EVERY
            # No master known now, mid-failover: connecting waits for one (FailoverRetry).
            with contextlib.suppress(redis.ConnectionError):
                self.get_master_address()  # type: ignore[no-untyped-call]  # untyped in redis-py
        return super().get_connection(*args, **kwargs)


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
        client: StoreClient = sentinel.master_for(  # type: ignore[no-untyped-call]  # untyped in redis-py
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
