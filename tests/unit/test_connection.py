"""The one way to Redis: URLs of one Redis or of Sentinels, redaction, failover retries, and replica waits."""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel
import trustme
from redis.sentinel import SentinelConnectionPool

from producers import BrokerUnavailable, ConfigurationError, Notifier, keys
from producers import notifier as notifier_module
from producers.connection import (
    DEFAULT_SENTINEL_PORT,
    MASTER_CHECK_EVERY,
    FailoverRetry,
    ReplicaWait,
    SentinelURL,
    StoreClient,
    WatchedSentinelPool,
    check_store_url,
    confirm_replicated,
    connect,
    describe,
    is_sentinel,
    redacted,
)
from producers.tls import VerifiedSSLConnection
from tests.tls import handshake_server, write_ca

USER = "569363e2-4e49-4661-87f2-16f245c5d66a"
BODY = {
    "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/app"},
    "activityType": "taskCreated",
    "previewText": {"content": "A task"},
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Sentinel URLs ---------------------------------------------------------------------------------------


def test_a_sentinel_url_names_its_sentinels_master_database_and_password() -> None:
    target = SentinelURL.parse("redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26380,sentinel-3/mymaster/2")

    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", DEFAULT_SENTINEL_PORT))
    assert (target.master_name, target.db) == ("mymaster", 2)
    assert (target.username, target.password, target.sentinel_password) == (None, "s@cret", None)


def test_a_sentinel_url_defaults_to_database_0_and_no_password() -> None:
    target = SentinelURL.parse("redis+sentinel://localhost:26379/teams")

    assert (target.master_name, target.db, target.password) == ("teams", 0, None)


def test_a_sentinel_url_takes_an_acl_user_ipv6_hosts_and_the_sentinels_own_password() -> None:
    target = SentinelURL.parse("redis+sentinel://fleet:pw@[::1]:26379,[fd00::2]/m/1?sentinel_password=sp")

    assert target.sentinels == (("::1", 26379), ("fd00::2", DEFAULT_SENTINEL_PORT))
    assert (target.username, target.password, target.sentinel_password) == ("fleet", "pw", "sp")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h:26379", "master_name"),
        ("redis+sentinel://h:26379/", "master_name"),
        ("redis+sentinel://h:26379/m/zero", "not a number"),
        ("redis+sentinel://h:26379/m/0/extra", "master_name"),
        ("redis+sentinel://h:port/m", "no valid port"),
        ("redis+sentinel://h:70000/m", "no valid port"),
        ("redis+sentinel://:pw@h:1,,h:2/m", "no Sentinel host"),
        ("redis+sentinel://h:1/m?master=x", "unknown option"),
        ("redis://h:1/m", "not a redis+sentinel"),
    ],
)
def test_a_malformed_sentinel_url_is_one_clear_error_naming_the_variable(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(why)) as caught:
        SentinelURL.parse(url, "TEAMS_NOTIFY_REDIS_URL")

    assert str(caught.value).startswith("TEAMS_NOTIFY_REDIS_URL=")


def test_a_malformed_sentinel_url_error_never_shows_a_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        SentinelURL.parse("redis+sentinel://:hunter2@h:1/m?sentinel_password=swordfish&x=1")

    assert "hunter2" not in str(caught.value)
    assert "swordfish" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://h:6379/0", "rediss://:pw@h:6380/1", "unix:///run/redis.sock", "redis+sentinel://h:1/m"]
)
def test_a_store_url_is_one_redis_or_its_sentinels(url: str) -> None:
    check_store_url(url)


@pytest.mark.parametrize("url", ["http://h/0", "amqp://h//", "h:6379", "redis+sentinel://h:1"])
def test_any_other_store_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="TEAMS_NOTIFY_REDIS_URL"):
        check_store_url(url)


def test_only_the_sentinel_scheme_is_a_sentinel_url() -> None:
    assert is_sentinel("redis+sentinel://h:1/m")
    assert is_sentinel("REDIS+SENTINEL://h:1/m")
    assert not is_sentinel("redis://h:1/0")


# --- redaction ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@redis.internal:6379/0", "redis://redis.internal:6379/0"),
        ("rediss://user:pw@h:6380/2", "rediss://h:6380/2"),
        ("redis+sentinel://:pw@s1:26379,s2:26379/m/0?sentinel_password=sp", "redis+sentinel://s1:26379,s2:26379/m/0"),
        ("amqp://fleet:pw@rabbit:5672/teams", "amqp://rabbit:5672/teams"),
        ("amqp://u:p1@r1//;amqp://u:p2@r2//", "amqp://r1//;amqp://r2//"),
        ("redis://:p@ss#w/rd@h:1/0", "redis://h:1/0"),
        ("redis://h:1/0", "redis://h:1/0"),
    ],
)
def test_a_redacted_url_keeps_hosts_and_drops_every_credential(url: str, shown: str) -> None:
    assert redacted(url) == shown


# --- replica waits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sentinel", "wait"),
    [
        (None, True, ReplicaWait(1, 5.0)),
        ("auto", True, ReplicaWait(1, 5.0)),
        (None, False, ReplicaWait(0)),
        ("off", True, ReplicaWait(0)),
        ("0", True, ReplicaWait(0)),
        ("2", False, ReplicaWait(2, 5.0)),
        ("1,2.5", True, ReplicaWait(1, 2.5)),
        ("1, 2500ms", True, ReplicaWait(1, 2.5)),
        ("1,3s", True, ReplicaWait(1, 3.0)),
    ],
)
def test_the_replica_wait_is_one_replica_through_sentinels_unless_told(
    value: str | None, sentinel: bool, wait: ReplicaWait
) -> None:
    assert ReplicaWait.parse(value, sentinel) == wait


@pytest.mark.parametrize("value", ["always", "-1", "1,", "1,soon", "1,0", "1,90s", "one,2"])
def test_a_malformed_replica_wait_names_its_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match="TEAMS_NOTIFY_REDIS_WAIT"):
        ReplicaWait.parse(value, True)


def test_a_plain_redis_enqueue_waits_for_no_replica_and_writes_nothing_more(store: redis.Redis, redis_url: str) -> None:
    notifier = Notifier(redis_url)
    try:
        job_id = notifier.notify_user(USER, BODY)
    finally:
        notifier.close()

    assert store.exists(keys.job(job_id))
    assert not store.exists(keys.replication_probe())


def test_an_enqueue_no_replica_confirms_is_refused_with_advice(
    redis_url: str, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAMS_NOTIFY_REDIS_WAIT", "1,50ms")
    notifier = Notifier(redis_url)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="idempotency_key") as caught:
            notifier.notify_user(USER, BODY, idempotency_key="k1")
        waited = time.monotonic() - started
    finally:
        notifier.close()

    assert "0 of the 1 replica" in str(caught.value)
    assert 0.05 <= waited < 2
    assert store.get(keys.replication_probe()) is not None  # the write WAIT counted from, on its connection


def test_confirming_a_job_that_is_not_on_the_master_says_so(redis_url: str) -> None:
    client = connect(redis_url, wait=ReplicaWait(0))
    waiting = connect(redis_url, wait=ReplicaWait(1, 0.05))
    try:
        assert confirm_replicated(client, keys.job("gone")) is True  # no wait asked: nothing checked
        assert confirm_replicated(waiting, keys.job("gone")) is False
    finally:
        client.close()
        waiting.close()


def test_an_enqueue_a_failover_lost_before_a_replica_confirmed_it_is_written_again_under_its_id(
    notifier: Notifier, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([False, True])
    written: list[int] = []

    def confirm(client: redis.Redis, job_key: str) -> bool:
        written.append(int(client.exists(job_key)))
        return next(answers)

    monkeypatch.setattr(notifier_module, "confirm_replicated", confirm)

    job_id = notifier.notify_user(USER, BODY, idempotency_key="again")

    assert written == [1, 1]
    assert store.zcard(keys.jobs_index()) == 1
    assert store.get(keys.idempotency("again")) == job_id
    assert notifier.status(job_id)["requests"]["total"] == 1


# --- clients -----------------------------------------------------------------------------------------------


def test_a_client_of_one_redis_knows_its_wait_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMS_NOTIFY_REDIS_WAIT", "2,1s")

    client = connect("redis://127.0.0.1:1/0")

    assert isinstance(client, StoreClient)
    assert client.replica_wait == ReplicaWait(2, 1.0)
    client.close()


def test_a_client_through_sentinels_asks_them_for_the_master_and_rides_out_a_failover() -> None:
    client = connect("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/3")

    assert isinstance(client, StoreClient)
    assert client.replica_wait == ReplicaWait(1, 5.0)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    kwargs: dict[str, Any] = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"]) == (3, "pw")
    assert isinstance(kwargs["retry"], FailoverRetry)
    assert client.sentinels is not None
    assert [s.connection_pool.connection_kwargs["port"] for s in client.sentinels.sentinels] == [1, 2]
    client.close()


def test_sentinels_that_do_not_answer_are_a_connection_error_within_the_failover_window() -> None:
    url = f"redis+sentinel://127.0.0.1:{closed_port()},127.0.0.1:{closed_port()}/mymaster/0"
    client = connect(url)
    pool = client.connection_pool
    pool.connection_kwargs["retry"] = FailoverRetry(window=0.5)

    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()

    assert time.monotonic() - started < 5
    client.close()


def test_describing_a_store_through_unreachable_sentinels_names_no_master_and_no_password() -> None:
    port = closed_port()

    document = describe(f"redis+sentinel://:pw@127.0.0.1:{port}/mymaster/0")

    assert document == {
        "kind": "redis-sentinel",
        "url": f"redis+sentinel://127.0.0.1:{port}/mymaster/0",
        "master_name": "mymaster",
        "master": None,
    }


def test_describing_one_redis_shows_its_url_without_password() -> None:
    assert describe("redis://:pw@h:1/0") == {"kind": "redis", "url": "redis://h:1/0"}


# --- the failover retry ------------------------------------------------------------------------------------


def test_the_failover_retry_retries_connection_errors_until_the_call_succeeds() -> None:
    retry = FailoverRetry(window=5, backoff=(0.001, 0.01))
    outcomes: list[Exception | None] = [redis.ConnectionError("down"), redis.TimeoutError("slow"), None]
    failures: list[int] = []

    def call() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "ok"

    assert retry.call_with_retry(call, lambda error, count: failures.append(count), with_failure_count=True) == "ok"
    assert failures == [1, 2]


def test_the_failover_retry_gives_up_when_its_window_is_spent() -> None:
    retry = FailoverRetry(window=0.2, attempts=1000, backoff=(0.01, 0.05))
    calls: list[float] = []

    def down() -> None:
        calls.append(time.monotonic())
        raise redis.ConnectionError("down")

    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        retry.call_with_retry(down, lambda error: None)

    assert 0.1 < time.monotonic() - started < 1
    assert len(calls) > 2


def test_the_failover_retry_gives_up_after_its_attempts() -> None:
    retry = FailoverRetry(window=60, attempts=2, backoff=(0.001, 0.001))
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise redis.ConnectionError("down")

    with pytest.raises(redis.ConnectionError):
        retry.call_with_retry(down, lambda error: None)

    assert len(calls) == 3


def test_the_failover_retry_never_retries_other_errors() -> None:
    retry = FailoverRetry(window=60, backoff=(0.001, 0.001))
    calls: list[int] = []

    def wrong() -> None:
        calls.append(1)
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        retry.call_with_retry(wrong, lambda error: None)

    assert calls == [1]


def test_a_client_through_sentinels_asks_them_where_the_master_is_at_most_every_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = connect("redis+sentinel://127.0.0.1:1/mymaster/0")
    pool = client.connection_pool
    assert isinstance(pool, WatchedSentinelPool)
    asked: list[float] = []
    monkeypatch.setattr(pool, "get_master_address", lambda: asked.append(time.monotonic()))
    monkeypatch.setattr(SentinelConnectionPool, "get_connection", lambda self, *a, **k: "connection")
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    taken = [pool.get_connection() for _ in range(5)]
    clock[0] += MASTER_CHECK_EVERY
    taken.append(pool.get_connection())

    assert taken == ["connection"] * 6
    assert asked == [100.0, 100.0 + MASTER_CHECK_EVERY]
    client.close()


def test_no_master_known_mid_failover_leaves_the_connecting_to_the_failover_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = connect("redis+sentinel://127.0.0.1:1/mymaster/0")
    pool = client.connection_pool

    def no_master() -> None:
        raise redis.sentinel.MasterNotFoundError("No master found for 'mymaster'")

    monkeypatch.setattr(pool, "get_master_address", no_master)
    monkeypatch.setattr(SentinelConnectionPool, "get_connection", lambda self, *a, **k: "connection")

    assert pool.get_connection() == "connection"
    client.close()


# --- TLS (rediss://) -------------------------------------------------------------------------------------

AZURE = "rediss://:Access%2BKey=@teams.redis.cache.windows.net:6380/0"


def test_a_rediss_client_verifies_the_server_against_ssl_cert_file_and_checks_its_host_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    client = connect(AZURE)

    pool = client.connection_pool
    assert pool.connection_class is VerifiedSSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert pool.connection_kwargs["ssl_check_hostname"] is True
    assert pool.connection_kwargs["ssl_ca_certs"] == str(bundle)
    assert (pool.connection_kwargs["host"], pool.connection_kwargs["port"]) == ("teams.redis.cache.windows.net", 6380)
    assert pool.connection_kwargs["password"] == "Access+Key="
    client.close()


def test_without_ssl_cert_file_a_rediss_client_trusts_the_system_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    client = connect(AZURE)

    assert "ssl_ca_certs" not in client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    client.close()


def test_a_plain_redis_client_gets_no_tls_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "absent.pem"))  # not looked at without TLS

    client = connect("redis://:pw@store:6379/0")

    assert client.connection_pool.connection_class is redis.Connection
    assert not any(name.startswith("ssl_") for name in client.connection_pool.connection_kwargs)
    client.close()


def test_an_explicit_opt_out_in_the_url_is_honoured_and_logged_as_a_warning_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="producers.connection"):
        client = connect(AZURE.replace("/0", "/0?ssl_cert_reqs=none&health_check_interval=5"))

    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_NONE
    assert kwargs["ssl_check_hostname"] is False
    assert kwargs["health_check_interval"] == 5  # the URL's other options still apply
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.startswith("TEAMS_NOTIFY_REDIS_URL: TLS verification of Redis at rediss://teams.redis.cache")
    assert "ssl_cert_reqs=none" in warning
    assert "Access" not in warning
    client.close()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("rediss://:pw@h:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'"),
        ("rediss://:pw@h:6380/0?ssl_verify=no", "unknown TLS option 'ssl_verify'"),
        ("rediss://:pw@h:6380/0?ssl_ca_certs=/nonexistent/ca.pem", "no such file"),
        ("redis://:pw@h:6379/0?ssl_cert_reqs=required", "needs a rediss:// URL"),
    ],
)
def test_a_bad_tls_option_is_one_clear_error_naming_the_variable_without_the_password(url: str, why: str) -> None:
    for check in (check_store_url, connect):
        with pytest.raises(ConfigurationError, match=r"^TEAMS_NOTIFY_REDIS_URL") as caught:
            check(url)
        assert why in str(caught.value)
        assert "pw" not in str(caught.value)


def test_a_redis_whose_certificate_is_not_trusted_is_refused_by_the_producer_and_nothing_is_enqueued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted, other = trustme.CA(), trustme.CA()
    bundle = write_ca(trusted, tmp_path / "bundle.pem")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))

    with handshake_server(other, "localhost") as port:
        started = time.monotonic()
        notifier = Notifier(f"rediss://:secret-key@localhost:{port}/0")
        with pytest.raises(BrokerUnavailable) as caught:
            notifier.notify_user(USER, BODY)
        notifier.close()

    message = str(caught.value)
    assert time.monotonic() - started < 5  # refused at once, not retried
    assert "TLS certificate verification failed" in message
    assert f"checked against the CA bundle {bundle}" in message
    assert message.endswith("nothing was enqueued")
    assert "secret-key" not in message
