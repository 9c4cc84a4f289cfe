"""The worker's settings: defaults, clouds, overrides, and one clear error naming each malformed variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from producers.errors import ConfigurationError, TeamsNotifyError
from worker.config import CLOUDS, GRAPH_RATE_LIMITS, Settings, load, parse_rate_limits

TENANT = "c8b1bf45-3834-4ecf-971a-b4c755ee677d"
CLIENT_ID = "a3111f15-658e-457c-9689-fd20fe907330"
SECRET = "Zx8Q~not-a-real-secret-but-secret-enough"


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = load(environ={})

    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.cloud == "global"
    assert settings.graph_url == "https://graph.microsoft.com/v1.0"
    assert settings.authority_host == "https://login.microsoftonline.com"
    assert (settings.tenant_id, settings.client_id, settings.client_secret) == (None, None, None)
    assert settings.rate_limits == GRAPH_RATE_LIMITS
    assert settings.rate_limits == {
        "bulk_tenant": 2,
        "bulk_app": 20,
        "single_tenant": 5,
        "single_app": 50,
        "team": 4,
        "user_minute": 10,
    }
    assert settings.metrics_port == 9808
    assert (settings.log_format, settings.log_level) == ("auto", "INFO")
    assert settings.app_manifest is None
    assert not settings.custom_authority


def test_blank_variables_count_as_unset() -> None:
    blank = {name: "  " for name in ("TEAMS_NOTIFY_REDIS_URL", "TEAMS_NOTIFY_CLOUD", "TEAMS_NOTIFY_METRICS_PORT")}

    assert load(environ=blank) == load(environ={})


def test_the_default_settings_object_matches_what_an_empty_environment_loads() -> None:
    assert load(environ={}) == Settings()


@pytest.mark.parametrize(
    ("cloud", "graph_url", "authority"),
    [
        ("global", "https://graph.microsoft.com/v1.0", "https://login.microsoftonline.com"),
        ("usgov", "https://graph.microsoft.us/v1.0", "https://login.microsoftonline.us"),
        ("dod", "https://dod-graph.microsoft.us/v1.0", "https://login.microsoftonline.us"),
        ("china", "https://microsoftgraph.chinacloudapi.cn/v1.0", "https://login.chinacloudapi.cn"),
        ("USGov", "https://graph.microsoft.us/v1.0", "https://login.microsoftonline.us"),
    ],
)
def test_each_cloud_sets_both_urls(cloud: str, graph_url: str, authority: str) -> None:
    settings = load(environ={"TEAMS_NOTIFY_CLOUD": cloud})

    assert (settings.cloud, settings.graph_url, settings.authority_host) == (cloud.lower(), graph_url, authority)
    assert not settings.custom_authority


def test_every_cloud_is_covered() -> None:
    assert set(CLOUDS) == {"global", "usgov", "dod", "china"}


def test_explicit_urls_override_the_clouds() -> None:
    settings = load(
        environ={
            "TEAMS_NOTIFY_CLOUD": "china",
            "TEAMS_NOTIFY_GRAPH_URL": "https://127.0.0.1:8443/v1.0/",
            "TEAMS_NOTIFY_AUTHORITY_HOST": "https://127.0.0.1:8443/",
        }
    )

    assert settings.graph_url == "https://127.0.0.1:8443/v1.0"
    assert settings.authority_host == "https://127.0.0.1:8443"
    assert settings.custom_authority


def test_every_setting_can_be_overridden(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    settings = load(
        environ={
            "TEAMS_NOTIFY_REDIS_URL": "rediss://:pw@redis.internal:6380/2",
            "TEAMS_NOTIFY_TENANT_ID": TENANT,
            "TEAMS_NOTIFY_CLIENT_ID": CLIENT_ID,
            "TEAMS_NOTIFY_CLIENT_SECRET": SECRET,
            "TEAMS_NOTIFY_RATE_LIMITS": "bulk_tenant=1, team=8,user_minute=5",
            "TEAMS_NOTIFY_METRICS_PORT": "0",
            "TEAMS_NOTIFY_LOG_FORMAT": "JSON",
            "TEAMS_NOTIFY_LOG_LEVEL": "debug",
            "TEAMS_NOTIFY_APP_MANIFEST": str(manifest),
        }
    )

    assert settings.redis_url == "rediss://:pw@redis.internal:6380/2"
    assert (settings.tenant_id, settings.client_id, settings.client_secret) == (TENANT, CLIENT_ID, SECRET)
    assert settings.rate_limits == {**GRAPH_RATE_LIMITS, "bulk_tenant": 1.0, "team": 8.0, "user_minute": 5.0}
    assert settings.metrics_port == 0
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert settings.app_manifest == str(manifest)
    assert settings.require_credentials() == (CLIENT_ID, SECRET)


def test_a_tenant_may_be_named_by_its_domain() -> None:
    assert load(environ={"TEAMS_NOTIFY_TENANT_ID": "contoso.onmicrosoft.com"}).tenant_id == "contoso.onmicrosoft.com"


def test_rate_limits_off_turns_pacing_off() -> None:
    assert load(environ={"TEAMS_NOTIFY_RATE_LIMITS": "off"}).rate_limits is None


@pytest.mark.parametrize("value", ["graph", "", " graph "])
def test_rate_limits_graph_are_the_published_figures(value: str) -> None:
    assert parse_rate_limits(value) == GRAPH_RATE_LIMITS


def test_the_published_figures_are_never_changed_by_an_override() -> None:
    parse_rate_limits("bulk_tenant=9")

    assert GRAPH_RATE_LIMITS["bulk_tenant"] == 2
    assert load(environ={}).rate_limits == GRAPH_RATE_LIMITS


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEAMS_NOTIFY_REDIS_URL", "http://localhost:6379/0"),
        ("TEAMS_NOTIFY_REDIS_URL", "localhost:6379"),
        ("TEAMS_NOTIFY_CLOUD", "mars"),
        ("TEAMS_NOTIFY_CLOUD", "gcc-high"),
        ("TEAMS_NOTIFY_GRAPH_URL", "http://graph.microsoft.com/v1.0"),
        ("TEAMS_NOTIFY_GRAPH_URL", "graph.microsoft.com"),
        ("TEAMS_NOTIFY_AUTHORITY_HOST", "http://login.microsoftonline.com"),
        ("TEAMS_NOTIFY_AUTHORITY_HOST", "https://"),
        ("TEAMS_NOTIFY_TENANT_ID", "common"),
        ("TEAMS_NOTIFY_TENANT_ID", "organizations"),
        ("TEAMS_NOTIFY_TENANT_ID", "not a tenant"),
        ("TEAMS_NOTIFY_TENANT_ID", "../evil"),
        ("TEAMS_NOTIFY_CLIENT_ID", "my-app"),
        ("TEAMS_NOTIFY_CLIENT_ID", "a3111f15658e457c9689fd20fe907330x"),
        ("TEAMS_NOTIFY_METRICS_PORT", "http"),
        ("TEAMS_NOTIFY_METRICS_PORT", "65536"),
        ("TEAMS_NOTIFY_METRICS_PORT", "-1"),
        ("TEAMS_NOTIFY_METRICS_PORT", "98.08"),
        ("TEAMS_NOTIFY_LOG_FORMAT", "xml"),
        ("TEAMS_NOTIFY_LOG_LEVEL", "LOUD"),
        ("TEAMS_NOTIFY_LOG_LEVEL", "10"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "bulk_tenant=x"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "nope=1"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "bulk_tenant"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "bulk_tenant=0"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "team=-4"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "bulk_tenant=1,,team=2"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "fast"),
        ("TEAMS_NOTIFY_RATE_LIMITS", "bulk_tenant=nan"),
        ("TEAMS_NOTIFY_APP_MANIFEST", "/nonexistent/manifest.json"),
    ],
)
def test_a_malformed_setting_is_a_configuration_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load(environ={variable: value})

    message = str(caught.value)
    assert variable in message
    assert "\n" not in message
    assert isinstance(caught.value, TeamsNotifyError)


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "TEAMS_NOTIFY_CLIENT_ID"),
        ({"TEAMS_NOTIFY_CLIENT_SECRET": SECRET}, "TEAMS_NOTIFY_CLIENT_ID"),
        ({"TEAMS_NOTIFY_CLIENT_ID": CLIENT_ID}, "TEAMS_NOTIFY_CLIENT_SECRET"),
    ],
)
def test_missing_credentials_are_named_when_the_worker_needs_them(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load(environ=environ).require_credentials()


def test_a_settings_repr_never_shows_the_secret_or_the_redis_password() -> None:
    settings = load(
        environ={
            "TEAMS_NOTIFY_CLIENT_SECRET": SECRET,
            "TEAMS_NOTIFY_CLIENT_ID": CLIENT_ID,
            "TEAMS_NOTIFY_REDIS_URL": "redis://worker:redis-password@redis.internal:6379/0",
        }
    )

    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert SECRET not in text
        assert "redis-password" not in text
    assert "redis.internal" in repr(settings)
    assert CLIENT_ID in repr(settings)


def test_a_bad_redis_url_error_never_shows_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load(environ={"TEAMS_NOTIFY_REDIS_URL": "http://:redis-password@redis.internal/0"})

    assert "redis-password" not in str(caught.value)


def test_settings_are_frozen() -> None:
    settings = load(environ={})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.graph_url = "https://evil.example"  # type: ignore[misc]


def test_load_reads_the_process_environment_when_given_no_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMS_NOTIFY_CLOUD", "dod")
    monkeypatch.setenv("TEAMS_NOTIFY_METRICS_PORT", "9999")

    settings = load()

    assert (settings.cloud, settings.metrics_port) == ("dod", 9999)


def test_load_takes_any_mapping_and_ignores_other_variables() -> None:
    settings = load(environ=MappingProxyType({"TEAMS_NOTIFY_CLOUD": "usgov", "PATH": "/bin", "CLOUD": "china"}))

    assert settings.cloud == "usgov"


def test_the_visibility_timeout_defaults_to_five_minutes_and_must_be_whole_seconds() -> None:
    assert load({}).visibility_timeout == 300
    assert load({"TEAMS_NOTIFY_VISIBILITY_TIMEOUT": "30"}).visibility_timeout == 30
    for bad in ("0", "-1", "soon", "1.5"):
        with pytest.raises(ConfigurationError, match="TEAMS_NOTIFY_VISIBILITY_TIMEOUT"):
            load({"TEAMS_NOTIFY_VISIBILITY_TIMEOUT": bad})


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 7 * 86400), ("12h", 43200), ("15m", 900), ("90s", 90), ("45", 45)]
)
def test_the_retention_is_a_duration_with_a_unit(text: str, seconds: float) -> None:
    assert load({"TEAMS_NOTIFY_RETENTION": text}).retention == seconds


def test_the_retention_defaults_to_seven_days() -> None:
    assert load({}).retention == 7 * 86400


@pytest.mark.parametrize("text", ["7w", "-1d", "0", "d", "soon", "inf"])
def test_a_malformed_retention_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigurationError, match="TEAMS_NOTIFY_RETENTION"):
        load({"TEAMS_NOTIFY_RETENTION": text})
