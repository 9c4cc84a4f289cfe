"""deploy/compose.yaml: valid for Compose, a queue-grade Redis, scalable workers, and profiles that fit together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import typer.main
import yaml

from tests.deploy.helpers import DEPLOY, SCHEMAS, Unset, env_file, interpolate, known_variables, yaml_documents
from worker import config

COMPOSE = DEPLOY / "compose.yaml"
SIMULATOR_ENV = DEPLOY / "simulator.env"
MICROSOFT_ENV = DEPLOY / "microsoft.env.example"
#: What deploy/microsoft.env.example asks for, filled in.
FILLED_IN = {"TEAMS_NOTIFY_CLIENT_SECRET": "a-real-secret"}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def service(name: str, variables: dict[str, str] | None = None) -> dict[str, Any]:
    """One service, with its variables interpolated as `docker compose` would when given these."""
    raw = compose()["services"][name]
    return raw if variables is None else dict(interpolate(raw, variables))


def option_value(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_under_deploy_parses(path: Path) -> None:
    assert yaml_documents(path)


def test_the_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose())


def test_redis_keeps_every_write_and_never_evicts() -> None:
    redis = service("redis", {})
    command = redis["command"]

    assert option_value(command, "--appendonly") == "yes"
    assert option_value(command, "--maxmemory-policy") == "noeviction"
    assert option_value(command, "--maxmemory") == "1gb"
    volume, target = redis["volumes"][0].split(":")[:2]
    assert (volume, target) == ("redis-data", "/data")
    assert volume in compose()["volumes"]


def test_the_worker_service_can_be_scaled() -> None:
    worker = service("worker")

    assert "container_name" not in worker
    assert "ports" not in worker, "a published port would stop the second replica"
    assert worker["command"][0] == "worker"
    assert worker["deploy"]["replicas"] >= 2
    assert worker["stop_grace_period"] == "60s"  # a send lasts 30 s at most
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_against_microsoft_the_workers_settings_load_with_the_clouds_urls() -> None:
    variables = {**env_file(MICROSOFT_ENV), **FILLED_IN}
    environment = service("worker", variables)["environment"]

    settings = config.load(environment)

    assert settings.graph_url == "https://graph.microsoft.com/v1.0"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.metrics_port == 9808
    assert environment["SSL_CERT_FILE"] == environment["REQUESTS_CA_BUNDLE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert set(environment) <= known_variables()


@pytest.mark.parametrize("variable", ["TEAMS_NOTIFY_TENANT_ID", "TEAMS_NOTIFY_CLIENT_ID", "TEAMS_NOTIFY_CLIENT_SECRET"])
def test_compose_stops_naming_a_credential_left_empty(variable: str) -> None:
    variables = {**env_file(MICROSOFT_ENV), **FILLED_IN, variable: ""}

    with pytest.raises(Unset, match=variable):
        service("worker", variables)


def test_with_the_simulator_env_the_worker_trusts_and_calls_the_simulator_of_the_profile() -> None:
    variables = env_file(SIMULATOR_ENV)
    worker, simulator = service("worker", variables), service("simulator", variables)
    command = simulator["command"]

    settings = config.load(worker["environment"])

    graph = urlsplit(settings.graph_url)
    assert (graph.hostname, str(graph.port)) == ("simulator", option_value(command, "--port"))
    assert settings.authority_host == f"https://simulator:{graph.port}"
    assert graph.hostname in [command[i + 1] for i, arg in enumerate(command) if arg == "--cert-hostname"]
    state_dir = option_value(command, "--state-dir")
    bundle = Path(worker["environment"]["SSL_CERT_FILE"])
    assert bundle == Path(state_dir) / "bundle.pem" == Path(worker["environment"]["REQUESTS_CA_BUNDLE"])
    assert f"simulator-state:{state_dir}" in simulator["volumes"]
    assert f"simulator-state:{state_dir}:ro" in worker["volumes"]
    assert variables["COMPOSE_PROFILES"] == "simulator"


def test_every_option_compose_gives_the_simulator_is_one_it_has() -> None:
    from worker.cli import app  # noqa: PLC0415 - the CLI, imported only where its options are checked

    command = typer.main.get_command(app)
    simulator = command.commands["simulator"]  # type: ignore[attr-defined]  # a click Group
    known = {opt for param in simulator.params for opt in param.opts}

    given = [arg for arg in service("simulator")["command"] if arg.startswith("--")]

    assert given
    assert set(given) <= known, set(given) - known


def test_the_simulator_and_the_monitoring_stack_are_opt_in_profiles() -> None:
    services = compose()["services"]

    profiles = {name: svc.get("profiles", []) for name, svc in services.items()}

    assert profiles == {
        "redis": [],
        "worker": [],
        "flower": [],
        "simulator": ["simulator"],
        "prometheus": ["monitoring"],
        "grafana": ["monitoring"],
    }
    assert services["worker"]["depends_on"]["simulator"] == {"condition": "service_healthy", "required": False}


def test_the_simulators_image_has_its_extra_and_its_own_health_check() -> None:
    simulator = service("simulator")

    assert simulator["build"]["args"]["EXTRAS"] == "simulator"
    assert "_simulator/stats" in " ".join(simulator["healthcheck"]["test"])


def test_flower_watches_the_broker_the_workers_use() -> None:
    flower = service("flower", {})
    broker = next(arg for arg in flower["command"] if arg.startswith("--broker="))

    assert broker == "--broker=" + service("worker", env_file(SIMULATOR_ENV))["environment"]["TEAMS_NOTIFY_REDIS_URL"]


def test_prometheus_scrapes_every_worker_on_its_metrics_port() -> None:
    port = service("worker", env_file(SIMULATOR_ENV))["environment"]["TEAMS_NOTIFY_METRICS_PORT"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())

    (job,) = prometheus["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]

    assert discovery["names"] == ["worker"]
    assert discovery["type"] == "A"
    assert str(discovery["port"]) == port


def test_grafana_is_provisioned_with_the_profiles_prometheus_and_the_dashboards_directory() -> None:
    grafana = service("grafana", {})
    provisioning = DEPLOY / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "teams-notify.yaml").read_text())["providers"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])

    assert urlsplit(datasource["url"]).netloc == "prometheus:9090"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_every_file_compose_mounts_exists() -> None:
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"


def test_every_published_port_is_on_the_loopback_interface_only() -> None:
    services = compose()["services"]
    variables = env_file(SIMULATOR_ENV)
    published = [port for name in services for port in service(name, variables).get("ports", [])]

    assert published
    assert all(port.startswith("127.0.0.1:") for port in published), published
