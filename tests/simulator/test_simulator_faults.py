"""Random faults: Graph's transient errors, seeded; dropped connections; latency."""

from __future__ import annotations

import time

import httpx
import pytest

from worker.simulator import Simulator

from .helpers import CLIENT_ID, USER, Graph, aad_user, text_topic_body


def statuses(graph: Graph, count: int) -> list[int]:
    """Statuses of `count` user sends (to distinct users, so no per-user limit applies)."""
    return [graph.user(f"00000000-0000-0000-0000-{i:012d}", text_topic_body()).status_code for i in range(count)]


@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [
        (429, "TooManyRequests", "1"),
        (503, "ServiceUnavailable", "1"),
        (500, "InternalServerError", None),
        (502, "BadGateway", None),
        (504, "GatewayTimeout", None),
    ],
)
def test_a_fault_answers_with_graphs_code_and_retry_after(
    sim: Simulator, graph: Graph, status: int, code: str, retry_after: str | None
) -> None:
    sim.reconfigure(error_rate=1, error_statuses=[status])
    response = graph.user(USER, text_topic_body())
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers.get("Retry-After") == retry_after
    assert graph.http.get("/_simulator/requests").json() == []


def test_a_decimal_fault_retry_after_is_sent_as_configured(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(error_rate=1, error_statuses=[503], fault_retry_after=0.25)
    assert graph.user(USER, text_topic_body()).headers["Retry-After"] == "0.25"


def test_the_same_seed_gives_the_same_faults(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(error_rate=0.5, seed=1234)
    first = statuses(graph, 30)
    assert 204 in first
    assert set(first) - {204}
    sim.reset()
    assert statuses(graph, 30) == first
    sim.reconfigure(seed=4321)
    assert statuses(graph, 30) != first


def test_a_dropped_connection_is_a_transport_error_and_nothing_is_recorded(
    sim: Simulator, graph: Graph, client: httpx.Client
) -> None:
    sim.reconfigure(drop_rate=1)
    for _ in range(3):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            graph.bulk(text_topic_body(recipients=[aad_user()]))
    sim.reconfigure(drop_rate=0)
    stats = client.get("/_simulator/stats").json()
    assert stats["responses"] == {}
    assert stats["accepted_requests"] == 0
    assert stats["dropped_connections"] == 3
    assert graph.bulk(text_topic_body(recipients=[aad_user()])).status_code == 202


def test_a_drop_comes_before_authentication(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(drop_rate=1)
    with pytest.raises(httpx.TransportError):
        client.post(f"/v1.0/users/{USER}/teamwork/sendActivityNotification", json={})


def test_throttling_comes_before_faults_and_faults_before_conflicts(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits={"bulk_tenant": 1}, error_rate=1, error_statuses=[500], conflict_app_ids=[CLIENT_ID])
    body = text_topic_body(recipients=[aad_user()])
    assert [graph.bulk(body).status_code for _ in range(2)] == [500, 429]


def test_latency_is_added_around_the_configured_mean(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(latency_ms=150)
    started = time.perf_counter()
    assert graph.user(USER, text_topic_body()).status_code == 204
    assert time.perf_counter() - started >= 0.14
    sim.reconfigure(latency_ms=100, latency_jitter_ms=100, seed=7)
    for _ in range(3):
        started = time.perf_counter()
        graph.user(USER, text_topic_body())
        assert time.perf_counter() - started < 1.0
