"""deploy/systemd/: a worker template unit that restarts sensibly, stops gently, and is hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.helpers import DEPLOY, env_file, known_variables

UNIT = DEPLOY / "systemd" / "teams-notify-worker@.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "worker.env.example"
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")


def directives() -> dict[str, dict[str, list[str]]]:
    """The unit's sections and their directives, each with every value given (some are given twice)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    pending = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


def service(key: str) -> str:
    (value,) = directives()["Service"][key]
    return value


def instance(tmp_path: Path, name: str) -> Path:
    """The template copied for systemd-analyze, which checks the commands it runs exist on this machine."""
    template = tmp_path / UNIT.name
    template.write_text(UNIT.read_text())
    return tmp_path / name


def test_the_unit_is_a_template_started_at_boot() -> None:
    assert UNIT.name.endswith("@.service")
    assert directives()["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in directives()["Unit"]["Wants"][0]


def test_each_instance_serves_metrics_on_its_own_port_as_a_celery_node_of_its_own() -> None:
    command = service("ExecStart").split()

    assert command[:2] == ["/usr/bin/env", "TEAMS_NOTIFY_METRICS_PORT=%i"]
    assert command[2:4] == ["/opt/teams-notify/bin/teams-notify", "worker"]
    hostname = next(arg for arg in command if arg.startswith("--hostname="))
    assert "%i" in hostname
    assert "%H" in hostname
    assert command[-1] == "$WORKER_ARGS"


def test_it_restarts_on_failure_but_not_for_a_bad_setting() -> None:
    assert service("Restart") == "on-failure"
    assert "2" in service("RestartPreventExitStatus").split()  # the CLI's exit code for a bad setting
    assert int(directives()["Unit"]["StartLimitBurst"][0]) > 0


def test_settings_come_from_an_environment_file_and_the_worker_runs_as_its_own_user() -> None:
    assert service("EnvironmentFile") == "/etc/teams-notify/worker.env"
    assert service("User") == service("Group") == "teams-notify"


def test_stopping_is_celerys_warm_shutdown_with_time_for_a_send_in_flight() -> None:
    assert service("KillSignal") == "SIGTERM"
    assert service("KillMode") == "mixed"
    assert int(service("TimeoutStopSec")) >= 45  # a send lasts 30 s at most


def test_the_service_is_hardened() -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }

    assert {key: service(key) for key in expected} == expected
    assert directives()["Service"]["SystemCallFilter"][0] == "@system-service"


def test_the_example_environment_file_names_known_variables_and_no_metrics_port() -> None:
    values = env_file(ENV_EXAMPLE)

    assert set(values) - {"WORKER_ARGS"} <= known_variables()
    assert "TEAMS_NOTIFY_METRICS_PORT" not in values, "the instance name is the port"
    assert {"TEAMS_NOTIFY_REDIS_URL", "TEAMS_NOTIFY_TENANT_ID", "TEAMS_NOTIFY_CLIENT_ID"} <= set(values)


@needs_systemd_analyze
def test_systemd_accepts_every_directive_of_an_instance(tmp_path: Path) -> None:
    unit = instance(tmp_path, "teams-notify-worker@9808.service")

    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )

    assert verified.returncode == 0
    assert verified.stdout + verified.stderr == "", "systemd warns of an unknown or malformed directive"


@needs_systemd_analyze
def test_systemd_rates_the_units_exposure_low(tmp_path: Path) -> None:
    unit = instance(tmp_path, "teams-notify-worker@9808.service")

    rated = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
    assert found, rated.stdout + rated.stderr
    assert float(found.group(1)) <= 2.0
