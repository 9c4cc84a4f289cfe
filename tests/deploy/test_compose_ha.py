"""deploy/compose.ha.yaml: a RabbitMQ cluster and Redis with Sentinels that agree with each other and with the
settings the workers load from it."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from producers.connection import SentinelURL
from tests.deploy.helpers import DEPLOY, SCHEMAS, Unset, env_file, interpolate, known_variables
from worker import broker, config

COMPOSE_HA = DEPLOY / "compose.ha.yaml"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
HA_ENV = DEPLOY / "ha.env.example"
#: What deploy/microsoft.env.example and deploy/ha.env.example ask for, filled in.
FILLED_IN = {
    "TEAMS_NOTIFY_CLIENT_SECRET": "a-real-secret",
    "RABBITMQ_PASSWORD": "0f3c9a7e51d24b8e",
    "RABBITMQ_ERLANG_COOKIE": "6b1d0c5e2f8a4c3b9e7d",
    "REDIS_PASSWORD": "a94b7f2c6e1d8035",
}
RABBITMQ = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
REDIS = ["redis-1", "redis-2", "redis-3"]
SENTINELS = ["sentinel-1", "sentinel-2", "sentinel-3"]


def variables() -> dict[str, str]:
    return {**env_file(DEPLOY / "microsoft.env.example"), **env_file(HA_ENV), **FILLED_IN}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_HA.read_text())
    return document


def service(name: str, given: dict[str, str] | None = None) -> dict[str, Any]:
    """One service with its variables interpolated as `docker compose` would."""
    return dict(interpolate(compose()["services"][name], variables() if given is None else given))


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def sentinel_config(name: str) -> dict[str, list[str]]:
    """The `sentinel ...` lines a Sentinel service writes, its shell variables expanded, by directive."""
    svc = service(name)
    script = svc["command"][-1]
    for variable, value in svc["environment"].items():
        script = script.replace(f"${variable}", value)
    lines = [line.split() for line in script.splitlines() if line.startswith(("sentinel ", "port "))]
    return {
        " ".join(words[:2]) if words[0] == "sentinel" else words[0]: words[2 if words[0] == "sentinel" else 1 :]
        for words in lines
    }


def test_the_ha_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose())


def test_the_workers_settings_load_as_rabbitmq_over_every_node_and_the_store_through_every_sentinel() -> None:
    environment = service("worker")["environment"]

    settings = config.load(environment)

    assert broker.kind(settings.broker) == "rabbitmq"
    hosts = [part.split("@")[1].split(":")[0] for part in settings.broker.split(";")]
    assert hosts == RABBITMQ == [service(name)["hostname"] for name in RABBITMQ]
    store = SentinelURL.parse(settings.redis_url)
    assert store.sentinels == tuple((name, 26379) for name in SENTINELS)
    assert store.password == FILLED_IN["REDIS_PASSWORD"]
    assert settings.replica_wait.replicas == 1
    assert set(environment) <= known_variables()


@pytest.mark.parametrize("name", SENTINELS)
def test_every_sentinel_watches_the_stores_master_with_a_majority_quorum(name: str) -> None:
    store = SentinelURL.parse(service("worker")["environment"]["TEAMS_NOTIFY_REDIS_URL"])

    sentinel = sentinel_config(name)

    assert sentinel["port"] == ["26379"]
    master_name, host, port, quorum = sentinel["sentinel monitor"]
    assert (master_name, host, port) == (store.master_name, REDIS[0], "6379")
    assert len(SENTINELS) // 2 + 1 <= int(quorum) <= len(SENTINELS)
    assert sentinel["sentinel auth-pass"] == [store.master_name, FILLED_IN["REDIS_PASSWORD"]]
    assert sentinel["sentinel announce-ip"] == [name]
    assert sentinel["sentinel resolve-hostnames"] == sentinel["sentinel announce-hostnames"] == ["yes"]
    assert 1000 <= int(sentinel["sentinel down-after-milliseconds"][1]) <= 30_000
    assert "/data" in service(name)["volumes"][0], "a Sentinel keeps what it learns (the current master)"


@pytest.mark.parametrize("name", REDIS)
def test_every_redis_node_keeps_every_write_needs_the_password_and_announces_its_name(name: str) -> None:
    command = service(name)["command"]

    assert option(command, "--appendonly") == "yes"
    assert option(command, "--maxmemory-policy") == "noeviction"
    assert option(command, "--requirepass") == option(command, "--masterauth") == FILLED_IN["REDIS_PASSWORD"]
    assert option(command, "--replica-announce-ip") == name
    if name == REDIS[0]:
        assert "--replicaof" not in command
    else:
        assert command[command.index("--replicaof") + 1 :][:2] == [REDIS[0], "6379"]


def test_the_rabbitmq_nodes_form_one_cluster_of_the_services_with_a_consumer_timeout() -> None:
    conf = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in RABBITMQ_CONF.read_text().splitlines())
        if key.strip() and not key.startswith("#")
    )
    nodes = sorted(value for key, value in conf.items() if key.startswith("cluster_formation.classic_config.nodes."))

    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    assert nodes == [f"rabbit@{service(name)['hostname']}" for name in RABBITMQ]
    assert 60_000 <= int(conf["consumer_timeout"]) <= 1_800_000
    cookies = {service(name)["environment"]["RABBITMQ_ERLANG_COOKIE"] for name in RABBITMQ}
    assert cookies == {FILLED_IN["RABBITMQ_ERLANG_COOKIE"]}
    for name in RABBITMQ:
        mounts = service(name)["volumes"]
        assert "./rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/20-teams-notify.conf:ro" in mounts
        assert f"{name}-data:/var/lib/rabbitmq" in mounts


def test_the_worker_waits_for_every_node_and_sentinel_and_can_be_scaled() -> None:
    worker = service("worker")

    assert {name for name, dep in worker["depends_on"].items() if dep["condition"] == "service_healthy"} >= {
        *RABBITMQ,
        *SENTINELS,
    }
    assert worker["depends_on"]["simulator"] == {"condition": "service_healthy", "required": False}
    assert "ports" not in worker
    assert worker["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("variable", ["RABBITMQ_PASSWORD", "RABBITMQ_ERLANG_COOKIE", "REDIS_PASSWORD"])
def test_compose_stops_naming_a_secret_of_the_ha_layout_left_empty(variable: str) -> None:
    with pytest.raises(Unset, match=variable):
        interpolate(compose()["services"], {**variables(), variable: ""})


def test_the_simulator_profile_is_the_one_of_the_base_compose_file() -> None:
    simulator = compose()["services"]["simulator"]

    assert simulator["profiles"] == ["simulator"]
    assert simulator["extends"] == {"file": "compose.yaml", "service": "simulator"}
    assert "simulator" in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]


def test_every_named_volume_is_declared_and_every_mounted_file_exists() -> None:
    declared = set(compose()["volumes"])
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_HA.parent / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_only_the_management_ui_is_published_and_on_the_loopback_interface() -> None:
    published = {name: service(name).get("ports", []) for name in compose()["services"] if name != "simulator"}

    assert {name: ports for name, ports in published.items() if ports} == {"rabbitmq-1": ["127.0.0.1:15672:15672"]}


def test_the_ha_env_example_names_only_what_the_ha_compose_file_reads() -> None:
    text = COMPOSE_HA.read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))

    assert set(env_file(HA_ENV)) <= used
