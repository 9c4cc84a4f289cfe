"""The simulated Entra works with real MSAL and refuses what Entra refuses, in Entra's error shape."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import msal
import pytest

from worker.simulator import Simulator

from .helpers import CLIENT_ID, GRAPH_SCOPE, SECRET, TENANT, fetch_token


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT-shaped token, unverified."""
    payload = token.split(".")[1]
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return result


def token_request(client: httpx.Client, tenant: str = TENANT, **form: str) -> httpx.Response:
    """POSTs a client-credentials form, with defaults that work unless overridden."""
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": GRAPH_SCOPE}
    data.update(form)
    return client.post(f"/{tenant}/oauth2/v2.0/token", data={k: v for k, v in data.items() if v != "-"})


@pytest.mark.parametrize("tenant", [TENANT, "contoso.onmicrosoft.com"])
def test_msal_gets_a_graph_token_from_the_simulator(
    sim: Simulator, client: httpx.Client, monkeypatch: pytest.MonkeyPatch, tenant: str
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sim.bundle_path))
    app = msal.ConfidentialClientApplication(
        CLIENT_ID, client_credential=SECRET, authority=f"{sim.authority_host}/{tenant}", instance_discovery=False
    )
    result = app.acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3599
    claims = claims_of(result["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["appid"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == 3599
    assert {"tid", "nbf", "jti"} <= claims.keys()
    response = client.post(
        "/v1.0/users/jacob@contoso.com/teamwork/sendActivityNotification",
        json={
            "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/users/x"},
            "activityType": "a",
        },
        headers={"Authorization": f"Bearer {result['access_token']}"},
    )
    assert response.status_code == 204
    assert client.get("/_simulator/stats").json()["tokens_issued"] == 1


def test_discovery_names_every_endpoint_msal_reads(sim: Simulator, client: httpx.Client) -> None:
    base = sim.authority_host
    for path in (f"/{TENANT}/v2.0/.well-known/openid-configuration", f"/{TENANT}/.well-known/openid-configuration"):
        config = client.get(path).json()
        assert config["token_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/token"
        for key in ("authorization_endpoint", "issuer", "jwks_uri", "device_authorization_endpoint"):
            assert config[key].startswith(f"{base}/{TENANT}/"), key
        assert config["end_session_endpoint"].startswith(base)
        assert config["tenant_region_scope"]


def test_a_domain_tenant_resolves_to_a_stable_guid(client: httpx.Client) -> None:
    first = claims_of(fetch_token(client, tenant="contoso.onmicrosoft.com"))["tid"]
    assert first == claims_of(fetch_token(client, tenant="Contoso.onmicrosoft.com"))["tid"]
    assert len(first) == 36


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": "-"}, 400, "invalid_request", 900144),
        ({"client_id": "-"}, 400, "invalid_request", 900144),
        ({"client_secret": "-"}, 401, "invalid_client", 7000218),
        ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope", 1002012),
        ({"scope": "-"}, 400, "invalid_request", 900144),
        ({"client_secret": "-", "client_assertion": "abc", "client_assertion_type": "x"}, 401, "invalid_client", 50027),
    ],
)
def test_malformed_token_requests_get_entras_errors(
    client: httpx.Client, form: dict[str, str], status: int, error: str, code: int
) -> None:
    response = token_request(client, **form)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()


@pytest.mark.parametrize("tenant", ["common", "organizations"])
def test_multi_tenant_aliases_are_refused_for_client_credentials(client: httpx.Client, tenant: str) -> None:
    response = token_request(client, tenant=tenant)
    assert response.status_code == 400
    assert response.json()["error_codes"] == [50059]


def test_a_tenant_that_is_neither_guid_nor_domain_is_not_found(client: httpx.Client) -> None:
    assert token_request(client, tenant="not_a_tenant").json()["error_codes"] == [90002]
    assert client.get("/not_a_tenant/v2.0/.well-known/openid-configuration").status_code == 400


def test_configured_clients_are_the_only_ones_accepted(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(clients={CLIENT_ID: SECRET})
    assert token_request(client).status_code == 200
    wrong_secret = token_request(client, client_secret="nope")
    assert wrong_secret.status_code == 401
    body = wrong_secret.json()
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    unknown = token_request(client, client_id="00000000-0000-0000-0000-000000000001")
    assert (unknown.status_code, unknown.json()["error_codes"]) == (400, [700016])
    assert client.get("/_simulator/stats").json()["token_errors"] == 2


def test_a_certificate_assertion_is_accepted_in_place_of_a_secret(client: httpx.Client) -> None:
    response = token_request(
        client,
        client_secret="-",
        client_assertion="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    )
    assert response.status_code == 200


def test_the_token_lifetime_follows_the_config(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(token_lifetime=5400)
    body = token_request(client).json()
    assert body["expires_in"] == body["ext_expires_in"] == 5400
