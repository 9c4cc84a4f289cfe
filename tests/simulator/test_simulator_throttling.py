"""Graph's published Teams limits: 429 with a Retry-After that, once waited, lets the request through."""

from __future__ import annotations

import time

import pytest

from worker.simulator import Simulator

from .helpers import TEAM, USER, Graph, aad_user, fetch_token, text_topic_body

ROOMY = {"single_tenant": 1000, "single_app": 1000, "team": 1000}


def bulk_body() -> dict[str, object]:
    """A one-recipient bulk body."""
    return text_topic_body(recipients=[aad_user()])


def test_a_third_bulk_send_in_a_second_is_throttled_and_passes_after_retry_after(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits="graph")
    assert [graph.bulk(bulk_body()).status_code for _ in range(2)] == [202, 202]
    throttled = graph.bulk(bulk_body())
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    retry_after = throttled.headers["Retry-After"]
    assert retry_after == "1"
    time.sleep(float(retry_after))
    assert graph.bulk(bulk_body()).status_code == 202
    stats = graph.http.get("/_simulator/stats").json()
    assert stats["responses"] == {"202": 3, "429": 1}
    assert stats["accepted_requests"] == 3


def test_a_decimal_retry_after_is_exact_enough_to_be_honoured(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits={"bulk_tenant": 4}, retry_after_decimal=True)
    assert [graph.bulk(bulk_body()).status_code for _ in range(4)] == [202] * 4
    time.sleep(0.3)
    throttled = graph.bulk(bulk_body())
    assert throttled.status_code == 429
    assert "." in throttled.headers["Retry-After"]
    retry_after = float(throttled.headers["Retry-After"])
    assert 0 < retry_after < 0.71
    time.sleep(retry_after)
    assert graph.bulk(bulk_body()).status_code == 202


def test_throttled_requests_consume_no_quota(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits={"bulk_tenant": 1}, retry_after_decimal=True)
    assert graph.bulk(bulk_body()).status_code == 202
    waits = [float(graph.bulk(bulk_body()).headers["Retry-After"]) for _ in range(5)]
    assert waits == sorted(waits, reverse=True)
    time.sleep(waits[-1])
    assert graph.bulk(bulk_body()).status_code == 202
    assert len(graph.http.get("/_simulator/requests").json()) == 2


def test_more_than_ten_notifications_a_minute_to_one_user_are_throttled(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits=ROOMY)
    assert {graph.user(USER, text_topic_body()).status_code for _ in range(10)} == {204}
    throttled = graph.user(USER, text_topic_body())
    assert throttled.status_code == 429
    assert 55 <= int(throttled.headers["Retry-After"]) <= 60
    team_send = graph.post(f"/teams/{TEAM}/sendActivityNotification", text_topic_body(recipient=aad_user(USER)))
    assert team_send.status_code == 429
    assert graph.user("ab88234e-0874-477c-9638-d144296ed04f", text_topic_body()).status_code == 204
    assert graph.bulk(bulk_body()).status_code == 202  # bulk sends are not counted per user


def test_four_sends_a_second_to_one_team_pass_and_a_fifth_does_not(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits={"single_tenant": 1000, "single_app": 1000, "user_minute": 0})
    path = f"/teams/{TEAM}/sendActivityNotification"
    statuses = [graph.post(path, text_topic_body(recipient=aad_user())).status_code for _ in range(5)]
    assert statuses == [204, 204, 204, 204, 429]
    other_team = "e8bece96-d393-4b9b-b8da-69cedef1a7e7"
    assert (
        graph.post(f"/teams/{other_team}/sendActivityNotification", text_topic_body(recipient=aad_user())).status_code
        == 204
    )


def test_five_single_sends_a_second_per_tenant_and_tenants_are_counted_apart(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits="graph")
    users = [f"00000000-0000-0000-0000-{i:012d}" for i in range(6)]
    statuses = [graph.user(user, text_topic_body()).status_code for user in users]
    assert statuses == [204] * 5 + [429]
    other_tenant = fetch_token(graph.http, tenant="fabrikam.onmicrosoft.com")
    assert (
        graph.post(
            f"/users/{USER}/teamwork/sendActivityNotification", text_topic_body(), token=other_tenant
        ).status_code
        == 204
    )


@pytest.mark.parametrize("spec", ["off", {"bulk_tenant": 0, "bulk_app": 0}])
def test_limits_can_be_turned_off(sim: Simulator, graph: Graph, spec: object) -> None:
    sim.reconfigure(rate_limits=spec)
    assert {graph.bulk(bulk_body()).status_code for _ in range(8)} == {202}
