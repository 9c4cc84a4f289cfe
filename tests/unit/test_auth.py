"""Tokens through real MSAL against the simulator's Entra: cached, renewed for bulk sends, errors typed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.auth import TokenProvider
from worker.config import load
from worker.errors import AuthError
from worker.simulator import Simulator, SimulatorConfig

TENANT = "7155e3c8-175e-4311-97ef-572edc3aa3db"
CLIENT = "a3111f15-658e-457c-9689-fd20fe907330"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    config = SimulatorConfig(port=0, state_dir=tmp_path_factory.mktemp("sim"), clients={CLIENT: "right"})
    with Simulator(config) as simulator:
        yield simulator


def provider(sim: Simulator, monkeypatch: pytest.MonkeyPatch, secret: str = "right") -> TokenProvider:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sim.bundle_path))
    settings = load(
        {
            "TEAMS_NOTIFY_GRAPH_URL": sim.graph_url,
            "TEAMS_NOTIFY_AUTHORITY_HOST": sim.authority_host,
            "TEAMS_NOTIFY_CLIENT_ID": CLIENT,
            "TEAMS_NOTIFY_CLIENT_SECRET": secret,
        }
    )
    return TokenProvider(settings)


def test_a_token_is_fetched_once_and_then_served_from_msals_cache(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.reconfigure(token_lifetime=3599)
    tokens = provider(sim, monkeypatch)
    before = sim.stats()["tokens_issued"]
    first = tokens.token(TENANT)
    second = tokens.token(TENANT)
    assert first.value == second.value
    assert sim.stats()["tokens_issued"] == before + 1  # type: ignore[operator]
    assert 3500 < first.lifetime <= 3599
    assert first.value not in repr(first) + repr(tokens)


def test_a_cached_token_too_short_for_a_bulk_send_is_replaced_by_a_fresh_one(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.reconfigure(token_lifetime=3599)
    tokens = provider(sim, monkeypatch)
    cached = tokens.token(TENANT)
    fresh = tokens.token(TENANT, min_lifetime=3599 + 60, required=3000)
    assert fresh.value != cached.value


def test_entra_tokens_shorter_than_a_bulk_send_needs_are_an_auth_error(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.reconfigure(token_lifetime=1800)
    with pytest.raises(AuthError, match="needs 45"):
        provider(sim, monkeypatch).token(TENANT, min_lifetime=45 * 60 + 120, required=45 * 60)
    sim.reconfigure(token_lifetime=3599)


def test_a_wrong_secret_is_a_permanent_auth_error_without_the_secret_in_it(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AuthError) as raised:
        provider(sim, monkeypatch, secret="wrong-secret-value").token(TENANT)
    assert raised.value.transient is False
    assert "invalid_client" in str(raised.value)
    assert "wrong-secret-value" not in str(raised.value)


def test_an_unreachable_entra_is_a_transient_auth_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load(
        {
            "TEAMS_NOTIFY_AUTHORITY_HOST": "https://127.0.0.1:9",
            "TEAMS_NOTIFY_CLIENT_ID": CLIENT,
            "TEAMS_NOTIFY_CLIENT_SECRET": "x",
        }
    )
    with pytest.raises(AuthError) as raised:
        TokenProvider(settings).token(TENANT)
    assert raised.value.transient is True
