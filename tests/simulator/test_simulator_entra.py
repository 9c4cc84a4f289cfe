"""The simulated Entra works with real MSAL and refuses what Entra refuses, in Entra's error shape."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import msal
import pytest
from cryptography.hazmat.primitives import hashes

from tests.certificates import make_certificate, shared_certificate
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


def test_the_token_lifetime_follows_the_config(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(token_lifetime=5400)
    body = token_request(client).json()
    assert body["expires_in"] == body["ext_expires_in"] == 5400


# Certificate credentials: assertions are verified for real, per-tenant token lifetimes, a hung token endpoint.

OTHER_TENANT = "0d5e1a7f-3c40-4a6b-9a1b-5d8f2f0e1c11"


@pytest.fixture(autouse=True)
def _token_knobs_back_to_default(shared_simulator: Simulator) -> Iterator[None]:
    """The knobs these tests turn are not among the shared fixture's defaults: put them back after each test."""
    yield
    shared_simulator.reconfigure(
        client_certificates={}, token_lifetimes={}, hung_token_tenants=[], token_fault_status=None
    )


def endpoint(sim: Simulator, tenant: str = TENANT) -> str:
    """The token endpoint, as MSAL puts it in an assertion's audience."""
    return f"{sim.authority_host}/{tenant}/oauth2/v2.0/token"


def assertion_request(client: httpx.Client, assertion: str, tenant: str = TENANT) -> httpx.Response:
    return token_request(
        client,
        tenant=tenant,
        client_secret="-",
        client_assertion=assertion,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    )


def refusal(response: httpx.Response) -> tuple[int, str, int]:
    body = response.json()
    return response.status_code, body["error"], body["error_codes"][0]


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "open-mode-x5c"])
def test_msal_signs_in_with_a_certificate_named_by_its_sha256_thumbprint(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, registered: bool
) -> None:
    app_certificate = shared_certificate("app")
    if registered:
        sim.reconfigure(clients={CLIENT_ID: SECRET}, client_certificates={CLIENT_ID: [app_certificate.certificate_pem]})
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sim.bundle_path))
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential={
            "private_key": app_certificate.key_pem,
            "public_certificate": app_certificate.certificate_pem,
        },
        authority=f"{sim.authority_host}/{TENANT}",
        instance_discovery=False,
    )

    result = app.acquire_token_for_client([GRAPH_SCOPE])

    assert "access_token" in result, result
    assert claims_of(result["access_token"])["appid"] == CLIENT_ID


def test_an_rs256_assertion_with_a_sha1_thumbprint_is_accepted_too(sim: Simulator, client: httpx.Client) -> None:
    app_certificate = shared_certificate("app")
    sim.reconfigure(client_certificates={CLIENT_ID: [app_certificate.certificate_pem]})
    signed = app_certificate.assertion(client_id=CLIENT_ID, audience=endpoint(sim), algorithm="RS256", sha256=False)

    assert assertion_request(client, signed).status_code == 200


def test_an_assertion_for_the_tenants_guid_endpoint_is_accepted_for_its_domain(
    sim: Simulator, client: httpx.Client
) -> None:
    app_certificate = shared_certificate("app")
    sim.reconfigure(client_certificates={CLIENT_ID: [app_certificate.certificate_pem]})
    domain = "contoso.onmicrosoft.com"
    guid = client.get(f"/{domain}/v2.0/.well-known/openid-configuration").json()["token_endpoint"]
    signed = app_certificate.assertion(client_id=CLIENT_ID, audience=guid)

    assert assertion_request(client, signed, tenant=domain).status_code == 200


def rejected_assertions(sim: Simulator) -> dict[str, tuple[str, int, str]]:
    """Each way an assertion goes wrong: the assertion, Entra's code and the start of its text."""
    app, stranger = shared_certificate("app"), shared_certificate("stranger")
    audience = endpoint(sim)
    hour = 3600.0
    return {
        "bad signature": (
            app.assertion(client_id=CLIENT_ID, audience=audience, signer=stranger.key),
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature value did not match",
        ),
        "unknown thumbprint": (
            stranger.assertion(client_id=CLIENT_ID, audience=audience),
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found.",
        ),
        "wrong audience": (
            app.assertion(client_id=CLIENT_ID, audience="https://login.microsoftonline.com/x/oauth2/v2.0/token"),
            700023,
            "Client assertion audience claim does not match Realm issuer.",
        ),
        "another tenant's audience": (
            app.assertion(client_id=CLIENT_ID, audience=endpoint(sim, OTHER_TENANT)),
            700023,
            "Client assertion audience claim does not match Realm issuer.",
        ),
        "expired": (
            app.assertion(client_id=CLIENT_ID, audience=audience, issued=time.time() - 2 * hour, lifetime=600),
            700024,
            "Client assertion is not within its valid time range.",
        ),
        "not yet valid": (
            app.assertion(client_id=CLIENT_ID, audience=audience, issued=time.time() + hour),
            700024,
            "Client assertion is not within its valid time range.",
        ),
        "another app's": (
            app.assertion(client_id=CLIENT_ID, audience=audience, iss="f0000000-0000-0000-0000-00000000000f"),
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ),
        "HMAC-signed": (
            jwt.encode({"aud": audience, "iss": CLIENT_ID, "sub": CLIENT_ID}, "k" * 32, headers={"x5t#S256": "x"}),
            50027,
            "Invalid JWT token. The signing algorithm 'HS256' is not supported.",
        ),
        "without a thumbprint": (
            jwt.encode({"aud": audience, "iss": CLIENT_ID, "sub": CLIENT_ID}, app.key, algorithm="PS256"),
            50027,
            "Invalid JWT token. The token has no thumbprint",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "bad signature",
        "unknown thumbprint",
        "wrong audience",
        "another tenant's audience",
        "expired",
        "not yet valid",
        "another app's",
        "HMAC-signed",
        "without a thumbprint",
    ],
)
def test_a_faulty_assertion_is_refused_with_entras_code(sim: Simulator, client: httpx.Client, case: str) -> None:
    sim.reconfigure(client_certificates={CLIENT_ID: [shared_certificate("app").certificate_pem]})
    signed, code, text = rejected_assertions(sim)[case]

    response = assertion_request(client, signed)

    assert refusal(response) == (401, "invalid_client", code)
    assert response.json()["error_description"].startswith(f"AADSTS{code}: {text}")


def test_a_registered_certificate_that_has_expired_is_refused(sim: Simulator, client: httpx.Client) -> None:
    old = make_certificate("expired", expired=True)
    sim.reconfigure(client_certificates={CLIENT_ID: [old.certificate_pem]})

    response = assertion_request(client, old.assertion(client_id=CLIENT_ID, audience=endpoint(sim)))

    assert refusal(response) == (401, "invalid_client", 700027)
    assert "The key used is expired." in response.json()["error_description"]


def test_an_app_with_only_a_secret_registered_cannot_sign_in_with_a_certificate(
    sim: Simulator, client: httpx.Client
) -> None:
    sim.reconfigure(clients={CLIENT_ID: SECRET})
    signed = shared_certificate("app").assertion(client_id=CLIENT_ID, audience=endpoint(sim))

    assert refusal(assertion_request(client, signed)) == (401, "invalid_client", 700027)


def test_in_open_mode_an_assertion_must_carry_the_certificate_that_signed_it(
    sim: Simulator, client: httpx.Client
) -> None:
    signed = shared_certificate("app").assertion(client_id=CLIENT_ID, audience=endpoint(sim))  # no x5c header

    assert refusal(assertion_request(client, signed)) == (401, "invalid_client", 700027)


def test_a_certificate_app_is_a_known_client_and_its_secret_is_wrong(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(client_certificates={CLIENT_ID: shared_certificate("app").certificate_pem})

    assert refusal(token_request(client)) == (401, "invalid_client", 7000215)
    unknown = token_request(client, client_id="00000000-0000-0000-0000-000000000001")
    assert refusal(unknown) == (400, "unauthorized_client", 700016)


def test_the_config_shows_registered_certificates_by_thumbprint_and_refuses_garbage(
    sim: Simulator, client: httpx.Client
) -> None:
    app_certificate = shared_certificate("app")
    sim.reconfigure(client_certificates={CLIENT_ID: [app_certificate.certificate_pem]})

    shown = client.get("/_simulator/config").json()["client_certificates"]

    thumbprint = app_certificate.certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert shown == {CLIENT_ID: [thumbprint]}
    bad = client.patch("/_simulator/config", json={"client_certificates": {CLIENT_ID: ["not a certificate"]}})
    assert bad.status_code == 400
    assert "client_certificates" in bad.json()["error"]


def test_each_tenant_may_have_its_own_token_lifetime(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(token_lifetimes={TENANT: 1800, "contoso.onmicrosoft.com": 2835})

    assert token_request(client).json()["expires_in"] == 1800
    assert token_request(client, tenant="Contoso.onmicrosoft.com").json()["expires_in"] == 2835
    assert token_request(client, tenant=OTHER_TENANT).json()["expires_in"] == 3599
    with pytest.raises(ValueError, match="token_lifetimes"):
        sim.reconfigure(token_lifetimes={TENANT: 0})


def test_tokens_are_counted_per_tenant(sim: Simulator, client: httpx.Client) -> None:
    for tenant in (TENANT, TENANT, OTHER_TENANT):
        token_request(client, tenant=tenant)

    assert client.get("/_simulator/stats").json()["tokens_by_tenant"] == {TENANT: 2, OTHER_TENANT: 1}


def test_a_hung_token_endpoint_holds_the_connection_for_its_tenant_only(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(hung_token_tenants=[TENANT])
    data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": GRAPH_SCOPE}

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/{TENANT}/oauth2/v2.0/token", data=data, timeout=httpx.Timeout(10, read=0.5))
    assert time.monotonic() - started >= 0.5
    assert token_request(client, tenant=OTHER_TENANT).status_code == 200

    other = httpx.Client(base_url=sim.authority_host, verify=sim.ssl_context(), timeout=10)
    with other, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(other.post, f"/{TENANT}/oauth2/v2.0/token", data=data)
        time.sleep(0.3)
        assert not pending.done()
        sim.reconfigure(hung_token_tenants=[])
        assert pending.result(timeout=10).status_code == 200
    stats = client.get("/_simulator/stats").json()
    assert stats["token_requests_held"] == 2
    assert stats["tokens_by_tenant"] == {OTHER_TENANT: 1, TENANT: 1}


@pytest.mark.parametrize(("status", "error"), [(429, "temporarily_unavailable"), (503, "server_error")])
def test_the_token_endpoint_can_be_throttled_or_down(
    sim: Simulator, client: httpx.Client, status: int, error: str
) -> None:
    sim.reconfigure(token_fault_status=status)

    response = token_request(client)

    assert (response.status_code, response.json()["error"]) == (status, error)
    assert ("Retry-After" in response.headers) is (status == 429)
    with pytest.raises(ValueError, match="token_fault_status"):
        sim.reconfigure(token_fault_status=404)
