"""The control API and the envelope: records, stats, reset, runtime config, and Graph's id headers."""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime

import httpx
import pytest

from worker.simulator import Simulator

from .helpers import CHAT, CLIENT_ID, TEAM, USER, Graph, aad_user, text_topic_body


def test_every_graph_response_carries_request_ids_and_a_date(graph: Graph) -> None:
    ok = graph.user(USER, text_topic_body(), **{"client-request-id": "my-correlation-id"})
    refused = graph.user(USER, {"nonsense": 1}, **{"client-request-id": "another-id"})
    anonymous = graph.http.post("/v1.0/teamwork/sendActivityNotificationToRecipients", json={})
    for response, echoed in ((ok, "my-correlation-id"), (refused, "another-id"), (anonymous, None)):
        uuid.UUID(response.headers["request-id"])
        assert response.headers["Date"]
        if echoed:
            assert response.headers["client-request-id"] == echoed
        else:
            uuid.UUID(response.headers["client-request-id"])
    inner = refused.json()["error"]["innerError"]
    assert inner["request-id"] == refused.headers["request-id"]
    assert inner["client-request-id"] == "another-id"
    datetime.fromisoformat(inner["date"])
    assert ok.headers["request-id"] != refused.headers["request-id"]


def test_an_accepted_request_is_recorded_exactly_as_received(graph: Graph) -> None:
    body = text_topic_body(recipients=[aad_user(), aad_user("jacob@contoso.com")], chainId=2**62)
    response = graph.bulk(body, **{"client-request-id": "cid-1"})
    assert response.status_code == 202
    (record,) = graph.http.get("/_simulator/requests").json()
    assert record["body"] == body
    assert record["endpoint"] == "bulk"
    assert record["path"] == "/v1.0/teamwork/sendActivityNotificationToRecipients"
    assert record["target"] is None
    assert record["app_id"] == CLIENT_ID
    uuid.UUID(record["tenant_id"])
    assert record["request_id"] == response.headers["request-id"]
    assert record["client_request_id"] == "cid-1"
    assert record["status"] == 202
    datetime.fromisoformat(record["received_at"])


def test_stats_count_responses_recipients_and_tokens(graph: Graph) -> None:
    graph.bulk(text_topic_body(recipients=[aad_user(f"00000000-0000-0000-0000-{i:012d}") for i in range(7)]))
    graph.user(USER, text_topic_body())
    graph.post(f"/teams/{TEAM}/sendActivityNotification", text_topic_body(recipient=aad_user()))
    graph.user(USER, {})
    stats = graph.http.get("/_simulator/stats").json()
    assert stats["responses"] == {"202": 1, "204": 2, "400": 1}
    assert stats["accepted_requests"] == 3
    assert stats["accepted_recipients"] == 9
    assert stats["max_recipients_in_request"] == 7
    assert stats["tokens_issued"] == 1


def test_records_can_be_filtered_by_endpoint_and_paged(graph: Graph) -> None:
    for index in range(5):
        graph.bulk(text_topic_body(recipients=[aad_user()], chainId=index))
        graph.user(USER, text_topic_body())
    bulk = graph.http.get("/_simulator/requests", params={"endpoint": "bulk", "offset": 1, "limit": 2}).json()
    assert [record["body"]["chainId"] for record in bulk] == [1, 2]
    assert graph.http.get("/_simulator/requests", params={"endpoint": "fax"}).status_code == 400
    assert graph.http.get("/_simulator/requests", params={"limit": "-1"}).status_code == 400


def test_reset_clears_records_stats_and_throttling(sim: Simulator, graph: Graph) -> None:
    sim.reconfigure(rate_limits={"bulk_tenant": 1})
    body = text_topic_body(recipients=[aad_user()])
    assert [graph.bulk(body).status_code for _ in range(2)] == [202, 429]
    reset = graph.http.post("/_simulator/reset")
    assert reset.status_code == 200
    assert graph.http.get("/_simulator/requests").json() == []
    assert graph.http.get("/_simulator/stats").json()["responses"] == {}
    assert graph.bulk(body).status_code == 202


def test_patch_config_changes_knobs_at_runtime_and_hides_secrets(graph: Graph) -> None:
    response = graph.http.patch(
        "/_simulator/config",
        json={"error_rate": 1, "error_statuses": [503], "clients": {CLIENT_ID: "secret"}, "rate_limits": {"team": 2}},
    )
    assert response.status_code == 200, response.text
    config = response.json()
    assert config["error_rate"] == 1
    assert config["clients"] == [CLIENT_ID]
    assert "secret" not in response.text
    assert config["effective_rate_limits"]["team"] == 2
    assert config["effective_rate_limits"]["bulk_tenant"] == 2
    assert graph.user(USER, text_topic_body()).status_code == 503
    assert graph.http.get("/_simulator/config").json() == config


@pytest.mark.parametrize(
    "change",
    [
        {"error_rate": 2},
        {"error_rate": "0.5"},
        {"drop_rate": True},
        {"error_statuses": [200]},
        {"error_statuses": []},
        {"rate_limits": {"bulk": 1}},
        {"rate_limits": "sometimes"},
        {"conflict_app_ids": "abc"},
        {"latency_ms": -5},
        {"token_lifetime": 0},
        {"port": 1234},
        {"no_such_field": 1},
        {},
        [1, 2],
    ],
)
def test_patch_config_refuses_bad_input_with_400(sim: Simulator, client: httpx.Client, change: object) -> None:
    before = client.get("/_simulator/config").json()
    response = client.patch("/_simulator/config", json=change)
    assert response.status_code == 400
    assert response.json()["error"]
    assert client.get("/_simulator/config").json() == before


def test_the_python_api_mirrors_the_control_api(sim: Simulator, graph: Graph) -> None:
    graph.user(USER, text_topic_body())
    assert sim.stats()["accepted_requests"] == 1
    assert sim.recorded_requests()[0]["target"] == USER
    with pytest.raises(ValueError, match="error_rate"):
        sim.reconfigure(error_rate=-1)
    sim.reset()
    assert sim.recorded_requests() == []


def test_ten_thousand_recipients_are_recorded_and_counted(graph: Graph) -> None:
    for batch in range(100):
        recipients = [aad_user(f"00000000-0000-0000-{batch:04d}-{i:012d}") for i in range(100)]
        assert graph.bulk(text_topic_body(recipients=recipients)).status_code == 202
    stats = graph.http.get("/_simulator/stats").json()
    assert stats["accepted_recipients"] == 10_000
    assert stats["max_recipients_in_request"] == 100
    records = graph.http.get("/_simulator/requests").json()
    assert sum(len(record["body"]["recipients"]) for record in records) == 10_000


def test_responses_with_a_body_are_not_delayed_by_nagle(client: httpx.Client) -> None:
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        client.get("/_simulator/stats")
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.03  # a delayed-ACK stall would take 40 ms


def test_a_chat_send_is_recorded_with_its_decoded_target(graph: Graph) -> None:
    graph.post(f"/chats/{CHAT}/sendActivityNotification", text_topic_body(recipient=aad_user()))
    assert graph.http.get("/_simulator/requests").json()[0]["target"] == CHAT
