"""The simulated Graph refuses what Graph v1.0 refuses, with a 400 naming the field, and decodes path ids."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .helpers import CHAT, TEAM, USER, Graph, aad_user, text_topic_body

CHAT_URL = "/chats/{}/sendActivityNotification"
TEAM_URL = f"/teams/{TEAM}/sendActivityNotification"


def bad_request_message(response: httpx.Response) -> str:
    """The message of a 400 BadRequest, after checking Graph's error shape."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"topic": None}, "topic"),
        ({"activityType": ""}, "activityType"),
        ({"from": "someone"}, "from"),
        ({"topic": {"source": "entityUrl", "value": "http://graph.microsoft.com/v1.0/teams/x"}}, "topic.value"),
        ({"topic": {"source": "text", "value": "Title"}}, "topic.webUrl"),
        ({"topic": {"source": "graphResource", "value": "https://x.example"}}, "topic.source"),
        ({"previewText": "plain text"}, "previewText"),
        ({"previewText": {"content": "x", "contentType": "markdown"}}, "previewText.contentType"),
        ({"templateParameters": {"name": "a", "value": "b"}}, "templateParameters"),
        ({"templateParameters": [{"name": "a", "value": 5}]}, "templateParameters[0].value"),
        ({"templateParameters": [{"name": "a", "value": "b", "extra": 1}]}, "templateParameters[0].extra"),
        ({"templateParameters": [{"@odata.type": "microsoft.graph.itemBody"}]}, "templateParameters[0].@odata.type"),
        ({"templateParameters": [{"name": 1, "value": "b"}]}, "templateParameters[0].name"),
        ({"chainId": 1.5}, "chainId"),
        ({"chainId": True}, "chainId"),
        ({"chainId": "123"}, "chainId"),
        ({"chainId": 2**63}, "chainId"),
        ({"teamsAppId": ""}, "teamsAppId"),
    ],
)
def test_a_bad_field_is_refused_with_a_message_naming_it(graph: Graph, change: dict[str, Any], field: str) -> None:
    body = {**text_topic_body(recipient=aad_user()), **change}
    assert field in bad_request_message(graph.post(TEAM_URL, body))


def test_a_chain_id_at_the_int64_limits_is_accepted(graph: Graph) -> None:
    for chain_id in (2**63 - 1, -(2**63), 0):
        assert graph.post(TEAM_URL, text_topic_body(recipient=aad_user(), chainId=chain_id)).status_code == 204


def test_the_user_endpoint_takes_no_recipient(graph: Graph) -> None:
    assert graph.user(USER, text_topic_body()).status_code == 204
    assert "recipient" in bad_request_message(graph.user(USER, text_topic_body(recipient=aad_user())))


@pytest.mark.parametrize(
    ("path", "recipient", "field"),
    [
        (CHAT_URL.format(CHAT), None, "recipient"),
        (CHAT_URL.format(CHAT), {"userId": USER}, "@odata.type"),
        (
            CHAT_URL.format(CHAT),
            {"@odata.type": "microsoft.graph.teamMembersNotificationRecipient", "teamId": TEAM},
            "@odata.type",
        ),
        (
            CHAT_URL.format(CHAT),
            {"@odata.type": "microsoft.graph.chatMembersNotificationRecipient", "chatId": "19:other@thread.v2"},
            "chatId",
        ),
        (TEAM_URL, {"@odata.type": "microsoft.graph.chatMembersNotificationRecipient", "chatId": CHAT}, "@odata.type"),
        (
            TEAM_URL,
            {"@odata.type": "microsoft.graph.teamMembersNotificationRecipient", "teamId": USER},
            "teamId",
        ),
        (
            TEAM_URL,
            {
                "@odata.type": "microsoft.graph.channelMembersNotificationRecipient",
                "teamId": TEAM,
                "channelId": "general",
            },
            "channelId",
        ),
        (TEAM_URL, {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": "not a user"}, "userId"),
    ],
)
def test_recipients_must_suit_the_endpoint_and_its_url(
    graph: Graph, path: str, recipient: dict[str, str] | None, field: str
) -> None:
    body = text_topic_body() if recipient is None else text_topic_body(recipient=recipient)
    assert field in bad_request_message(graph.post(path, body))


def test_an_odata_type_with_a_leading_hash_is_accepted(graph: Graph) -> None:
    recipient = {"@odata.type": "#microsoft.graph.aadUserNotificationRecipient", "userId": USER}
    assert graph.post(TEAM_URL, text_topic_body(recipient=recipient)).status_code == 204
    assert graph.bulk(text_topic_body(recipients=[recipient])).status_code == 202


def test_bulk_takes_one_to_a_hundred_aad_users(graph: Graph) -> None:
    hundred = [aad_user(f"00000000-0000-0000-0000-{i:012d}") for i in range(100)]
    assert graph.bulk(text_topic_body(recipients=hundred)).status_code == 202
    too_many = bad_request_message(graph.bulk(text_topic_body(recipients=[*hundred, aad_user()])))
    assert "recipients" in too_many
    assert "100" in too_many
    assert "recipients" in bad_request_message(graph.bulk(text_topic_body(recipients=[])))
    assert "recipients" in bad_request_message(graph.bulk(text_topic_body()))
    team = {"@odata.type": "microsoft.graph.teamMembersNotificationRecipient", "teamId": TEAM}
    assert "recipients[1]" in bad_request_message(graph.bulk(text_topic_body(recipients=[aad_user(), team])))
    assert "recipient" in bad_request_message(
        graph.bulk(text_topic_body(recipient=aad_user(), recipients=[aad_user()]))
    )


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"topic": ', "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"activityType": NaN}', "application/json"),
        (b'{"activityType": "a", "activityType": "b"}', "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b'{"activityType": "a"}', "text/plain"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(graph: Graph, content: bytes, content_type: str) -> None:
    response = graph.http.post(
        f"/v1.0{TEAM_URL}",
        content=content,
        headers={"Authorization": f"Bearer {graph.token}", "Content-Type": content_type},
    )
    bad_request_message(response)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/users/not-a-user/teamwork/sendActivityNotification", "user id"),
        ("/chats/avc@thread.skype/sendActivityNotification", "chat id"),
        ("/teams/not-a-guid/sendActivityNotification", "team id"),
    ],
)
def test_a_malformed_id_in_the_url_is_refused(graph: Graph, path: str, field: str) -> None:
    assert field in bad_request_message(graph.post(path, text_topic_body(recipient=aad_user())))


def test_percent_encoded_ids_are_decoded_and_recorded(graph: Graph) -> None:
    encoded_chat = "19%3Ad65713bc498c4a428c71ef9353e6ce20%40thread.v2"
    body = text_topic_body(
        recipient={"@odata.type": "microsoft.graph.chatMembersNotificationRecipient", "chatId": CHAT}
    )
    assert graph.post(f"/chats/{encoded_chat}/sendActivityNotification", body).status_code == 204
    assert (
        graph.post("/users/jacob%40contoso.com/teamwork/sendActivityNotification", text_topic_body()).status_code == 204
    )
    records = graph.http.get("/_simulator/requests").json()
    assert [(r["endpoint"], r["target"]) for r in records] == [("chat", CHAT), ("user", "jacob@contoso.com")]
    assert records[0]["path"] == f"/v1.0/chats/{CHAT}/sendActivityNotification"


def test_an_encoded_slash_in_an_id_cannot_change_the_route(graph: Graph) -> None:
    # Decoded, this path would read /v1.0/teamwork/sendActivityNotificationToRecipients-like segments;
    # matched raw, it is a user send whose id (with a slash) is not a user id.
    path = "/users/x%2F..%2F..%2Fteamwork/teamwork/sendActivityNotification"
    assert "user id" in bad_request_message(graph.post(path, text_topic_body()))
    unknown = graph.post(f"/teams/{TEAM}%2FsendActivityNotification", text_topic_body())
    assert "Resource not found" in bad_request_message(unknown)


def test_only_post_is_allowed_on_a_send(graph: Graph) -> None:
    response = graph.http.get(f"/v1.0{TEAM_URL}", headers={"Authorization": f"Bearer {graph.token}"})
    assert response.status_code == 405
    assert response.json()["error"]["message"]
