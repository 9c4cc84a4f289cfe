"""Real MSAL against the simulator's Entra: secrets and certificates, clouds, timeouts, and Entra's errors typed."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.certificates import AppCertificate, shared_certificate
from worker.auth import TokenProvider
from worker.config import Settings, load
from worker.entra import EntraClient
from worker.errors import CredentialsRefused, EntraUnavailable, TenantNotFound
from worker.simulator import Simulator, SimulatorConfig

TENANT = "7155e3c8-175e-4311-97ef-572edc3aa3db"
OTHER = "0d5e1a7f-3c40-4a6b-9a1b-5d8f2f0e1c11"
CLIENT = "a3111f15-658e-457c-9689-fd20fe907330"
SECRET = "right-secret-not-real"
PASSWORD = "pem-password-not-real"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    registered = shared_certificate("app").certificate_pem
    config = SimulatorConfig(
        port=0,
        state_dir=tmp_path_factory.mktemp("sim"),
        clients={CLIENT: SECRET},
        client_certificates={CLIENT: [registered]},
    )
    with Simulator(config) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _trust(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sim.bundle_path))
    yield
    sim.reconfigure(hung_token_tenants=[], token_lifetime=3599, token_fault_status=None)


def settings(sim: Simulator, **env: str) -> Settings:
    base = {
        "TEAMS_NOTIFY_GRAPH_URL": sim.graph_url,
        "TEAMS_NOTIFY_AUTHORITY_HOST": sim.authority_host,
        "TEAMS_NOTIFY_CLIENT_ID": CLIENT,
    }
    return load({**base, **env})


def client(sim: Simulator, timeout: tuple[float, float] = (5, 10), **env: str) -> EntraClient:
    current = settings(sim, **({"TEAMS_NOTIFY_CLIENT_SECRET": SECRET} | env))
    return EntraClient(
        current.credential(), current.authority_host, current.graph_scope, instance_discovery=False, timeout=timeout
    )


def certificate_env(path: Path, app_certificate: AppCertificate) -> dict[str, str]:
    app_certificate.write(path, password=PASSWORD)
    return {"TEAMS_NOTIFY_CLIENT_CERTIFICATE": str(path), "TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD": PASSWORD}


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return result


def test_every_fetch_asks_entra_msal_keeps_nothing(sim: Simulator) -> None:
    entra = client(sim)
    before = sim.stats()["tokens_issued"]

    first, lifetime = entra.fetch(TENANT)
    second, _ = entra.fetch(TENANT)

    assert first != second
    assert lifetime == 3599
    assert sim.stats()["tokens_issued"] == before + 2  # type: ignore[operator]


def test_a_certificate_only_worker_signs_in_with_an_encrypted_key(sim: Simulator, tmp_path: Path) -> None:
    env = certificate_env(tmp_path / "app.pem", shared_certificate("app"))
    current = settings(sim, **env)

    token, _ = client(sim, TEAMS_NOTIFY_CLIENT_SECRET="", **env).fetch(TENANT)

    assert claims(token)["appid"] == CLIENT
    assert current.client_secret is None


def test_an_unregistered_certificate_is_refused_but_only_for_now(sim: Simulator, tmp_path: Path) -> None:
    env = certificate_env(tmp_path / "stranger.pem", shared_certificate("stranger"))

    with pytest.raises(CredentialsRefused) as raised:
        client(sim, **env).fetch(TENANT)

    assert raised.value.transient is True
    assert raised.value.code == 700027
    assert "certificate" in str(raised.value)
    assert "Trace ID" not in str(raised.value)


def test_a_wrong_secret_is_refused_transiently_without_the_secret_in_the_error(sim: Simulator) -> None:
    with pytest.raises(CredentialsRefused) as raised:
        client(sim, TEAMS_NOTIFY_CLIENT_SECRET="wrong-secret-value").fetch(TENANT)

    assert raised.value.transient is True
    assert raised.value.code == 7000215
    assert str(raised.value).startswith(f"Entra refuses the client secret of app {CLIENT} for tenant {TENANT}")
    assert "wrong-secret-value" not in str(raised.value)


def test_an_unknown_tenant_is_permanent(sim: Simulator) -> None:
    with pytest.raises(TenantNotFound) as raised:
        client(sim).fetch("not_a_tenant")

    assert (raised.value.transient, raised.value.reason) == (False, "unknown_tenant")


def test_an_unreachable_entra_is_transient() -> None:
    current = load(
        {
            "TEAMS_NOTIFY_AUTHORITY_HOST": "https://127.0.0.1:9",
            "TEAMS_NOTIFY_CLIENT_ID": CLIENT,
            "TEAMS_NOTIFY_CLIENT_SECRET": "x",
        }
    )
    entra = EntraClient(current.credential(), current.authority_host, current.graph_scope, instance_discovery=False)

    with pytest.raises(EntraUnavailable) as raised:
        entra.fetch(TENANT)

    assert raised.value.transient is True


def test_a_hung_token_endpoint_times_out_and_holds_no_other_tenant(sim: Simulator) -> None:
    entra = client(sim, timeout=(2, 1))
    entra.fetch(TENANT)  # the tenant's metadata is read; now its token endpoint hangs
    sim.reconfigure(hung_token_tenants=[TENANT])

    started = time.monotonic()
    with pytest.raises(EntraUnavailable, match="did not answer"):
        entra.fetch(TENANT)
    took = time.monotonic() - started
    token, _ = entra.fetch(OTHER)

    assert 0.9 < took < 5
    assert token


@pytest.mark.parametrize("status", [429, 500, 503])
def test_entra_throttling_or_down_is_transient(sim: Simulator, status: int) -> None:
    sim.reconfigure(token_fault_status=status)

    with pytest.raises(EntraUnavailable) as raised:
        client(sim).fetch(OTHER)

    assert raised.value.transient is True
    sim.reconfigure(token_fault_status=None)
    token, _ = client(sim).fetch(OTHER)  # a new MSAL app: MSAL's own hold-back for Retry-After is per app
    assert token


@pytest.mark.parametrize(
    ("cloud", "audience"),
    [
        ("global", "https://graph.microsoft.com"),
        ("usgov", "https://graph.microsoft.us"),
        ("dod", "https://dod-graph.microsoft.us"),
        ("china", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_each_cloud_asks_for_its_own_graph(sim: Simulator, cloud: str, audience: str) -> None:
    token, _ = client(sim, TEAMS_NOTIFY_CLOUD=cloud).fetch(TENANT)

    assert claims(token)["aud"] == audience


def test_the_provider_with_a_certificate_and_redis_hands_out_a_shared_token(
    sim: Simulator, tmp_path: Path, redis_url: str
) -> None:
    env = certificate_env(tmp_path / "app.pem", shared_certificate("app"))
    current = settings(sim, TEAMS_NOTIFY_REDIS_URL=redis_url, **env)
    first, second = TokenProvider(current), TokenProvider(current)
    before = sim.stats()["tokens_issued"]

    token = first.token(TENANT, 45 * 60 + 120, required=45 * 60 + 10)

    assert second.token(TENANT).value == token.value
    assert sim.stats()["tokens_issued"] == before + 1  # type: ignore[operator]
    first.close()
    second.close()
