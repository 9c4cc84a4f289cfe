"""deploy/grafana: the teams-notify dashboard parses, uses the provisioned data source, queries only metrics the
worker defines, and is the directory Grafana's provisioning and Compose load."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from tests.deploy.helpers import DEPLOY, yaml_documents
from worker import observe

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "teams-notify.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning" / "dashboards" / "teams-notify.yaml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
DATASOURCE_UID = "prometheus"

#: A metric name in PromQL: one of ours, or Prometheus's own `up`, not part of a longer identifier.
_NAME = re.compile(r"(?<![A-Za-z0-9_:])(teams_notify_[A-Za-z0-9_:]+|up)(?![A-Za-z0-9_:])")
#: String literals (label values, regexes), which may hold anything, are dropped before names are read.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
#: The series a family of each type exports, by suffix.
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = dashboard()["panels"]
    return found


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its template variables' queries."""
    queries = [target["expr"] for panel in panels() for target in panel["targets"]]
    for variable in dashboard()["templating"]["list"]:
        query = variable["query"]
        queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def series_names(expression: str) -> set[str]:
    """The series names a PromQL expression reads (strings left out)."""
    return set(_NAME.findall(_STRING.sub('""', expression)))


def defined_series() -> dict[str, str]:
    """Every series the worker's code can export, mapped to its metric family's name: the metrics registered
    by `worker.observe` and the fleet collector's gauges, plus Prometheus's `up`."""
    families = [family for family in REGISTRY.collect() if family.name.startswith("teams_notify_")]
    families += observe.FleetCollector(redis.Redis()).describe()  # describing reads nothing from Redis
    series = {"up": "up"}
    for family in families:
        for suffix in _SUFFIXES[family.type]:
            series[family.name + suffix] = family.name
    return series


def dashboard_series() -> set[str]:
    """Every series name the dashboard's queries read."""
    return {name for expression in expressions() for name in series_names(expression)}


def dashboard_families() -> set[str]:
    """The metric families behind the dashboard's series (suffixes stripped by each family's type)."""
    known = defined_series()
    return {known[name] for name in dashboard_series() if name in known}


def test_the_dashboard_is_grafana_json_with_a_title_a_uid_and_panels() -> None:
    document = dashboard()
    assert document["uid"] == "teams-notify"
    assert document["title"]
    assert len(panels()) >= 15
    assert len({panel["id"] for panel in panels()}) == len(panels())


def test_every_panel_and_target_uses_the_provisioned_prometheus_data_source() -> None:
    [source] = yaml_documents(DATASOURCES)[0]["datasources"]
    assert source["uid"] == DATASOURCE_UID
    for panel in panels():
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
    for variable in dashboard()["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID


def test_series_names_are_read_from_promql_without_label_values_or_functions() -> None:
    expression = 'sum by (le) (rate(teams_notify_job_seconds_bucket{job=~"up|teams_notify_x"}[5m])) / up'
    assert series_names(expression) == {"teams_notify_job_seconds_bucket", "up"}
    assert series_names("histogram_quantile(0.99, rate(setup[1m]))") == set()


def test_suffixes_map_to_the_family_by_its_type() -> None:
    known = defined_series()
    assert known["teams_notify_job_seconds_count"] == "teams_notify_job_seconds"
    assert known["teams_notify_recipients_sent_total"] == "teams_notify_recipients_sent"
    assert known["teams_notify_dead_letters"] == "teams_notify_dead_letters"
    assert "teams_notify_dead_letters_total" not in known  # a gauge has no _total
    assert "teams_notify_requests" not in known  # a counter is queried by its _total series


def test_every_query_names_only_series_the_worker_defines() -> None:
    for expression in expressions():
        named = series_names(expression)
        assert named, expression
        assert named <= set(defined_series()), (expression, named - set(defined_series()))


@pytest.mark.parametrize(
    "family",
    [
        "teams_notify_requests",
        "teams_notify_graph_responses",
        "teams_notify_throttled",
        "teams_notify_retry_after_seconds",
        "teams_notify_retries",
        "teams_notify_dead_letters",
        "teams_notify_recipients_sent",
        "teams_notify_recipients_dead_lettered",
        "teams_notify_lane_requests",
        "teams_notify_slot_wait_seconds",
        "teams_notify_token_requests",
        "teams_notify_tokens_served",
        "teams_notify_graph_request_seconds",
        "teams_notify_job_seconds",
        "up",
    ],
)
def test_the_dashboard_shows_what_an_on_call_person_needs(family: str) -> None:
    assert family in dashboard_families()


def test_latencies_are_shown_as_p50_and_p99() -> None:
    for family in ("teams_notify_graph_request_seconds", "teams_notify_job_seconds"):
        quantiles = {
            match
            for expression in expressions()
            if f"{family}_bucket" in expression
            for match in re.findall(r"histogram_quantile\((0\.\d+)", expression)
        }
        assert quantiles == {"0.5", "0.99"}, family


def provided_paths() -> Iterator[str]:
    for provider in yaml_documents(PROVISIONING)[0]["providers"]:
        assert provider["type"] == "file"
        yield provider["options"]["path"]


def test_grafana_provisioning_loads_this_directory_as_compose_mounts_it() -> None:
    compose = yaml_documents(DEPLOY / "compose.yaml")[0]
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    [path] = provided_paths()
    assert mounts["./grafana/dashboards"] == path
    assert (DEPLOY / "grafana" / "dashboards").resolve() == DASHBOARD.parent.resolve()
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert Path(path).is_absolute()
