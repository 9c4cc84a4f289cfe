"""The broker setting: which URLs it takes, what Celery is configured with for each, and what status shows."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.signals import celeryd_init
from kombu import Connection

from producers.connection import ReplicaWait
from producers.errors import BrokerUnavailable, ConfigurationError
from producers.tls import VerifiedSSLConnection
from worker import broker
from worker.app import create_app
from worker.config import Settings, load

SENTINEL = "redis+sentinel://:store-pw@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/teams/1"
RABBITMQ = "amqp://fleet:broker-pw@rabbitmq.internal:5672/teams"


# --- the setting -------------------------------------------------------------------------------------------


def test_without_a_broker_url_the_broker_is_the_store() -> None:
    settings = load({"TEAMS_NOTIFY_REDIS_URL": "redis://redis.internal:6379/2"})

    assert settings.broker_url is None
    assert settings.broker == "redis://redis.internal:6379/2"


@pytest.mark.parametrize(
    "url",
    [
        "redis://broker:6379/1",
        "rediss://:pw@broker:6380/0",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "amqp://guest:guest@localhost:5672//",
        "amqps://fleet:pw@rabbitmq.internal:5671/teams",
        "amqp://u:p@rabbit-1:5672//;amqp://u:p@rabbit-2:5672//;amqp://u:p@rabbit-3:5672//",
    ],
)
def test_the_broker_may_be_redis_sentinels_or_rabbitmq(url: str) -> None:
    assert load({"TEAMS_NOTIFY_BROKER_URL": url}).broker == url


@pytest.mark.parametrize(
    "url",
    [
        "http://rabbitmq.internal:15672/",
        "kafka://broker:9092",
        "amqp://:5672//",
        "amqp://rabbit:port//",
        "redis://a:1/0;redis://b:1/0",
        "amqp://a//;redis://b:1/0",
        "redis+sentinel://s1:26379",
        "sqs://key:secret@",
    ],
)
def test_any_other_broker_url_is_one_clear_error_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^TEAMS_NOTIFY_BROKER_URL"):
        load({"TEAMS_NOTIFY_BROKER_URL": url})


def test_a_bad_broker_url_error_never_shows_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load({"TEAMS_NOTIFY_BROKER_URL": "amqp://fleet:broker-pw@:5672//"})

    assert "broker-pw" not in str(caught.value)


def test_the_store_may_be_reached_through_sentinels() -> None:
    settings = load({"TEAMS_NOTIFY_REDIS_URL": SENTINEL})

    assert settings.redis_url == SENTINEL
    assert settings.replica_wait == ReplicaWait(1, 5.0)


def test_a_malformed_sentinel_store_url_names_the_variable_and_hides_the_password() -> None:
    with pytest.raises(ConfigurationError, match=r"^TEAMS_NOTIFY_REDIS_URL") as caught:
        load({"TEAMS_NOTIFY_REDIS_URL": "redis+sentinel://:store-pw@s1:26379/"})

    assert "store-pw" not in str(caught.value)


def test_the_replica_wait_can_be_set_or_turned_off() -> None:
    assert load({}).replica_wait == ReplicaWait(0)
    assert load({"TEAMS_NOTIFY_REDIS_URL": SENTINEL, "TEAMS_NOTIFY_REDIS_WAIT": "off"}).replica_wait == ReplicaWait(0)
    assert load({"TEAMS_NOTIFY_REDIS_WAIT": "2,1s"}).replica_wait == ReplicaWait(2, 1.0)
    with pytest.raises(ConfigurationError, match="TEAMS_NOTIFY_REDIS_WAIT"):
        load({"TEAMS_NOTIFY_REDIS_WAIT": "always"})


def test_a_settings_repr_shows_broker_and_store_without_their_passwords() -> None:
    text = repr(load({"TEAMS_NOTIFY_REDIS_URL": SENTINEL, "TEAMS_NOTIFY_BROKER_URL": RABBITMQ}))

    assert "store-pw" not in text
    assert "broker-pw" not in text
    assert "rabbitmq.internal:5672/teams" in text
    assert "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/teams/1" in text
    assert "redis_wait='1,5s'" in text


def test_the_default_settings_still_match_an_empty_environment() -> None:
    assert load({}) == Settings()


# --- what Celery gets --------------------------------------------------------------------------------------


def test_kinds_of_broker() -> None:
    assert broker.kind("redis://h:1/0") == "redis"
    assert broker.kind("rediss://h:1/0") == "redis"
    assert broker.kind(SENTINEL) == "redis-sentinel"
    assert broker.kind(RABBITMQ) == "rabbitmq"
    assert broker.kind("AMQPS://h//;amqps://g//") == "rabbitmq"


def test_a_sentinel_url_becomes_kombus_sentinel_transport_with_the_master_name() -> None:
    url, options = broker.celery_url("redis+sentinel://:p%40ss@10.0.0.1:26379,[fd00::2]:26380/teams/1")

    assert url == "sentinel://:p%40ss@10.0.0.1:26379/1;sentinel://:p%40ss@[fd00::2]:26380/1"
    assert options == {"master_name": "teams"}


def test_the_sentinels_own_password_goes_in_the_sentinel_options() -> None:
    url, options = broker.celery_url("redis+sentinel://s:26379/teams?sentinel_password=sp")

    assert url == "sentinel://s:26379/0"
    assert options == {"master_name": "teams", "sentinel_kwargs": {"password": "sp"}}


def test_other_urls_go_to_celery_as_they_are() -> None:
    assert broker.celery_url(RABBITMQ) == (RABBITMQ, {})
    assert broker.celery_url("redis://h:1/0") == ("redis://h:1/0", {})
    assert broker.celery_url("unix:///run/redis.sock") == ("redis+socket:///run/redis.sock", {})


def test_over_rabbitmq_the_fleets_queues_are_durable_quorum_queues_and_publishes_are_confirmed() -> None:
    app = create_app(Settings(redis_url="redis://store:6379/0", broker_url=RABBITMQ))

    assert app.conf.broker_url == RABBITMQ
    assert app.conf.result_backend == "redis://store:6379/0"
    queues = {queue.name: queue for queue in app.conf.task_queues}
    assert set(queues) == {"teams-notify", "teams-notify.admin"}
    for name, queue in queues.items():
        assert queue.durable
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert (queue.exchange.name, queue.exchange.type, queue.routing_key) == (name, "direct", name)
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert app.conf.task_acks_late
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_routes == {"teams_notify.admin.*": {"queue": "teams-notify.admin"}}


def test_over_rabbitmq_with_a_sentinel_store_admin_results_go_to_redis_through_the_sentinels() -> None:
    app = create_app(Settings(redis_url=SENTINEL, broker_url=RABBITMQ))

    assert app.conf.result_backend.startswith("sentinel://:store-pw@10.0.0.1:26379/1;")
    assert app.conf.result_backend_transport_options == {"master_name": "teams"}


def test_a_sentinel_broker_uses_kombus_sentinel_transport_with_the_visibility_timeout() -> None:
    app = create_app(Settings(redis_url=SENTINEL, visibility_timeout=60))

    assert app.conf.broker_url.count("sentinel://") == 3
    assert app.conf.broker_transport_options == {
        "master_name": "teams",
        "visibility_timeout": 60,
        "unacked_restore_interval": 6,
        "unacked_restore_throttle": 1,
    }
    assert not app.conf.task_queues


def test_a_redis_broker_is_configured_as_before() -> None:
    app = create_app(Settings(redis_url="redis://store:6379/0"))

    assert app.conf.broker_url == app.conf.result_backend == "redis://store:6379/0"
    assert app.conf.broker_transport_options["visibility_timeout"] == 300


def test_the_layout_names_broker_and_store_without_credentials() -> None:
    settings = Settings(redis_url="redis://:store-pw@store:6379/0", broker_url=RABBITMQ)

    assert broker.layout(settings) == {
        "broker": {"kind": "rabbitmq", "url": "amqp://rabbitmq.internal:5672/teams", "queues": "quorum"},
        "store": {"kind": "redis", "url": "redis://store:6379/0", "write_wait": "off"},
    }


def test_callbacks_over_redis_go_to_the_named_queue() -> None:
    app = create_app(Settings(redis_url="redis://store:6379/0"))

    assert broker.CallbackQueues(app, Settings())("billing") == "billing"


def test_a_sentinel_broker_uses_the_fleets_sentinel_transport() -> None:
    app = create_app(Settings(redis_url=SENTINEL))

    connection = app.connection_for_write()
    try:
        assert isinstance(connection.transport, broker.FleetSentinelTransport)
        assert [url.split("@")[1] for url in connection.alt] == [
            "10.0.0.1:26379/1",
            "10.0.0.2:26379/1",
            "10.0.0.3:26379/1",
        ]
    finally:
        connection.release()


@pytest.mark.parametrize(
    ("channel_class", "transport"),
    [
        (broker.FleetSentinelChannel, broker.FleetSentinelTransport),
        (broker.FleetRedisChannel, broker.FleetRedisTransport),
    ],
)
def test_a_channel_whose_connection_is_gone_fails_as_a_connection_error_kombu_ignores_on_close(
    channel_class: type[Any], transport: type[Any]
) -> None:
    channel = channel_class.__new__(channel_class)
    channel.connection = type("ClosedTransport", (), {"client": None})()

    with pytest.raises(redis.ConnectionError):
        channel._get_pool()
    assert redis.ConnectionError in transport.connection_errors
    assert transport.Channel is channel_class


def test_a_redis_broker_uses_the_fleets_redis_transport() -> None:
    app = create_app(Settings(redis_url="redis://store:6379/0"))

    connection = app.connection_for_write()
    try:
        assert isinstance(connection.transport, broker.FleetRedisTransport)
        assert connection.hostname == "store"
    finally:
        connection.release()


# --- TLS (rediss://) -------------------------------------------------------------------------------------

AZURE = "rediss://:Access%2BKey=@teams.redis.cache.windows.net:6380/0"


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SSL_CERT_FILE names this (empty) bundle."""
    path = tmp_path / "bundle.pem"
    path.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    return path


def test_a_rediss_store_has_the_broker_and_the_result_backend_verify_the_server(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True, "ssl_ca_certs": str(bundle)}

    with caplog.at_level(logging.WARNING):
        app = create_app(Settings(redis_url=AZURE))
        connection = app.connection_for_write()
        backend: Any = app.backend  # a RedisBackend

    assert app.conf.broker_use_ssl == expected
    assert app.conf.redis_backend_use_ssl == expected
    assert app.conf.broker_url == app.conf.result_backend == AZURE
    try:
        assert isinstance(connection.transport, broker.FleetRedisTransport)
        assert connection.ssl == expected
    finally:
        connection.release()
    assert backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert backend.connparams["ssl_check_hostname"] is True
    assert backend.connparams["ssl_ca_certs"] == str(bundle)
    assert issubclass(backend.connparams["connection_class"], redis.SSLConnection)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]  # no "insecure SSL"


def test_the_fleets_redis_channel_explains_a_refused_certificate() -> None:
    assert broker.FleetRedisChannel.connection_class_ssl is VerifiedSSLConnection


def test_a_rediss_broker_beside_a_plain_store_is_the_only_one_with_tls(bundle: Path) -> None:
    app = create_app(Settings(redis_url="redis://store:6379/0", broker_url=AZURE))

    assert app.conf.broker_use_ssl["ssl_ca_certs"] == str(bundle)
    assert not app.conf.redis_backend_use_ssl


@pytest.mark.parametrize(
    ("store", "broker_url"),
    [("redis://store:6379/0", None), (SENTINEL, None), ("redis://store:6379/0", RABBITMQ), (SENTINEL, RABBITMQ)],
)
def test_without_rediss_nothing_of_tls_is_configured(store: str, broker_url: str | None) -> None:
    app = create_app(Settings(redis_url=store, broker_url=broker_url))

    assert not app.conf.broker_use_ssl
    assert not app.conf.redis_backend_use_ssl


def test_the_tls_options_of_a_url_go_to_celery_as_options_not_in_the_url(bundle: Path, tmp_path: Path) -> None:
    ca = tmp_path / "redis-ca.pem"
    ca.write_text("")

    url, options = broker.celery_url(f"{AZURE}?ssl_ca_certs={ca}&socket_timeout=5")

    assert (url, options) == (f"{AZURE}?socket_timeout=5", {})
    assert broker.ssl_options(f"{AZURE}?ssl_ca_certs={ca}") == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        "ssl_ca_certs": str(ca),
    }


def test_an_explicit_opt_out_reaches_celery_and_is_logged_as_a_warning_without_the_password(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.broker"):
        app = create_app(Settings(redis_url=f"{AZURE}?ssl_cert_reqs=none"))

    assert app.conf.broker_use_ssl["ssl_cert_reqs"] == ssl.CERT_NONE
    assert app.conf.redis_backend_use_ssl["ssl_cert_reqs"] == ssl.CERT_NONE
    warnings = [record.getMessage() for record in caplog.records if record.name == "worker.broker"]
    assert len(warnings) == 1
    assert warnings[0].startswith("TEAMS_NOTIFY_REDIS_URL: TLS verification of Redis at rediss://teams.redis")
    assert "Access" not in warnings[0]


def test_a_bad_tls_option_fails_at_start_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^TEAMS_NOTIFY_BROKER_URL: unknown TLS option 'ssl_verify'"):
        load({"TEAMS_NOTIFY_BROKER_URL": f"{AZURE}?ssl_verify=no"})


@pytest.mark.parametrize(
    ("store", "broker_url", "probed"),
    [
        (AZURE, None, [(AZURE, "TEAMS_NOTIFY_REDIS_URL")]),
        (AZURE, RABBITMQ, [(AZURE, "TEAMS_NOTIFY_REDIS_URL")]),
        (
            "redis://store:6379/0",
            AZURE,
            [("redis://store:6379/0", "TEAMS_NOTIFY_REDIS_URL"), (AZURE, "TEAMS_NOTIFY_BROKER_URL")],
        ),
        (SENTINEL, RABBITMQ, []),
    ],
)
def test_a_worker_checks_each_redis_of_the_fleet_once_at_start(
    store: str, broker_url: str | None, probed: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(broker, "probe", lambda url, variable: calls.append((url, variable)))

    broker.verify_tls(Settings(redis_url=store, broker_url=broker_url))

    assert calls == probed


def test_a_worker_whose_redis_certificate_is_refused_exits_at_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = "TEAMS_NOTIFY_REDIS_URL: TLS certificate verification failed for Redis at h:6380: self-signed"

    def refuse(url: str, variable: str) -> None:
        raise BrokerUnavailable(refusal)

    monkeypatch.setenv("TEAMS_NOTIFY_REDIS_URL", AZURE)
    monkeypatch.setattr(broker, "probe", refuse)

    with pytest.raises(SystemExit) as caught:
        celeryd_init.send(sender="w1@host", instance=None, conf=None, options={})

    assert caught.value.code == 2
    assert capsys.readouterr().err == f"teams-notify: error: {refusal}\n"


def test_a_worker_whose_redis_is_trusted_or_down_starts_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setenv("TEAMS_NOTIFY_REDIS_URL", AZURE)
    monkeypatch.setattr(broker, "probe", lambda url, variable: calls.append((url, variable)))

    celeryd_init.send(sender="w1@host", instance=None, conf=None, options={})  # no SystemExit

    assert calls == [(AZURE, "TEAMS_NOTIFY_REDIS_URL")]


def test_a_redis_channel_keeps_one_client_per_pool_and_messages_still_flow(redis_url: str) -> None:
    with Connection(redis_url, transport=broker.FleetRedisTransport) as connection:
        channel = connection.default_channel
        first, again = channel._create_client(), channel._create_client()
        assert first is again  # not a new redis.Redis (and its callbacks copied) for each publish
        queue = connection.SimpleQueue("teams-notify-shared-client-test")
        queue.put({"n": 1})
        assert queue.get(timeout=5).payload == {"n": 1}

        channel._pool = None  # kombu drops its pool after a lost connection: the next client is over the new one
        renewed = channel._create_client()
        assert renewed is not first
        assert renewed.connection_pool is channel.pool
        assert renewed.ping()
        queue.close()
