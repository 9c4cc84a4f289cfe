"""deploy/ files are valid for the tools that read them, checked offline."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).parents[2]


def test_the_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)


def test_the_compose_workers_run_the_fleet_with_the_contracts_settings() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    worker = compose["services"]["worker"]
    assert worker["command"][0] == "worker"
    assert worker["environment"]["TEAMS_NOTIFY_REDIS_URL"].startswith("redis://redis:")
    assert worker["stop_grace_period"] == "60s"
