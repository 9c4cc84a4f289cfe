"""Graph's refusals of well-formed calls: 401 bad tokens, 412 short-lived tokens on bulk, 409 app conflicts."""

from __future__ import annotations

import httpx
import pytest

from worker.simulator import Simulator
from worker.simulator.tokens import TokenAuthority

from .helpers import CHAT, CLIENT_ID, TEAM, TENANT, USER, Graph, aad_user, fetch_token, text_topic_body

CONFLICT = (
    f"Found multiple applications with the same AAD App ID '{CLIENT_ID}' - "
    "a Teams Application ID is required to resolve which application is correct."
)


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The message of a Graph error, after checking its status and code."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def sends(graph: Graph) -> dict[str, httpx.Response]:
    """One valid call to each endpoint."""
    chat = {"@odata.type": "microsoft.graph.chatMembersNotificationRecipient", "chatId": CHAT}
    return {
        "user": graph.user(USER, text_topic_body()),
        "chat": graph.post(f"/chats/{CHAT}/sendActivityNotification", text_topic_body(recipient=chat)),
        "team": graph.post(f"/teams/{TEAM}/sendActivityNotification", text_topic_body(recipient=aad_user())),
        "bulk": graph.bulk(text_topic_body(recipients=[aad_user()])),
    }


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        (None, "empty"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer not-a-jwt", "CompactToken"),
        ("Bearer aGVhZGVy.cGF5bG9hZA.c2lnbmF0dXJl", "signature"),
    ],
)
def test_a_missing_or_bad_token_gets_401(client: httpx.Client, authorization: str | None, words: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post(
        f"/v1.0/users/{USER}/teamwork/sendActivityNotification", json=text_topic_body(), headers=headers
    )
    assert words in error_of(response, 401, "InvalidAuthenticationToken")
    assert "WWW-Authenticate" in response.headers


def test_a_token_from_another_simulator_gets_401(graph: Graph) -> None:
    foreign, _ = TokenAuthority().issue(
        tenant_id=TENANT, app_id=CLIENT_ID, audience="https://graph.microsoft.com", lifetime=3600
    )
    assert "signature" in error_of(
        graph.user(USER, text_topic_body(), Authorization=f"Bearer {foreign}"), 401, "InvalidAuthenticationToken"
    )


def test_an_expired_token_or_one_for_another_resource_gets_401(sim: Simulator, graph: Graph) -> None:
    expired, _ = sim.state.tokens.issue(
        tenant_id=TENANT, app_id=CLIENT_ID, audience="https://graph.microsoft.com", lifetime=-1
    )
    assert "expired" in error_of(
        graph.post("/teamwork/sendActivityNotificationToRecipients", {}, token=expired),
        401,
        "InvalidAuthenticationToken",
    )
    other = graph.http.post(
        f"/{TENANT}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": "s",
            "scope": "api://other/.default",
        },
    ).json()["access_token"]
    assert "audience" in error_of(
        graph.user(USER, text_topic_body(), Authorization=f"Bearer {other}"), 401, "InvalidAuthenticationToken"
    )


def test_auth_is_checked_before_the_body(client: httpx.Client) -> None:
    response = client.post("/v1.0/teamwork/sendActivityNotificationToRecipients", json={"nonsense": True})
    assert response.status_code == 401


def test_a_token_with_less_than_45_minutes_left_gets_412_on_bulk_only(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(token_lifetime=1800)
    graph = Graph(client, fetch_token(client))
    statuses = {kind: response.status_code for kind, response in sends(graph).items()}
    assert statuses == {"user": 204, "chat": 204, "team": 204, "bulk": 412}
    message = error_of(graph.bulk(text_topic_body(recipients=[aad_user()])), 412, "PreconditionFailed")
    assert "45 minutes" in message
    sim.reconfigure(token_lifetime=2760)
    assert (
        graph.bulk(text_topic_body(recipients=[aad_user()]), Authorization=f"Bearer {fetch_token(client)}").status_code
        == 202
    )


def test_a_bad_body_is_reported_before_the_short_token(sim: Simulator, client: httpx.Client) -> None:
    sim.reconfigure(token_lifetime=60)
    graph = Graph(client, fetch_token(client))
    assert graph.bulk(text_topic_body()).status_code == 400


def test_a_conflicting_app_gets_409_with_graphs_exact_message_unless_teams_app_id_is_given(
    sim: Simulator, graph: Graph
) -> None:
    sim.reconfigure(conflict_app_ids=[CLIENT_ID.upper()])
    for kind, response in sends(graph).items():
        assert error_of(response, 409, "Conflict") == CONFLICT, kind
    body = text_topic_body(recipients=[aad_user()], teamsAppId="0c43b6de-6e3d-4a1d-bd24-19ad4d1a8e2c")
    assert graph.bulk(body).status_code == 202


def test_a_conflicting_user_gets_409_wherever_it_is_addressed(sim: Simulator, graph: Graph) -> None:
    other = "ab88234e-0874-477c-9638-d144296ed04f"
    sim.reconfigure(conflict_user_ids=[other])
    assert graph.user(USER, text_topic_body()).status_code == 204
    assert error_of(graph.user(other, text_topic_body()), 409, "Conflict") == CONFLICT
    team_send = graph.post(f"/teams/{TEAM}/sendActivityNotification", text_topic_body(recipient=aad_user(other)))
    assert team_send.status_code == 409
    assert graph.bulk(text_topic_body(recipients=[aad_user(), aad_user(other)])).status_code == 409
    assert graph.bulk(text_topic_body(recipients=[aad_user(), aad_user(other)], teamsAppId="x")).status_code == 202
    records = graph.http.get("/_simulator/requests").json()
    assert [r["endpoint"] for r in records] == ["user", "bulk"]
