"""Every v1.0 example body in shared/reference/ is accepted with Graph's status; the beta one is refused."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import CHAT, Graph

WEB_URL = (
    "https://teams.microsoft.com/l/message/19:448cfd2ac2a7490a9084a9ed14cttr78c@thread.skype/1605223780000"
    "?tenantId=c8b1bf45-3834-4ecf-971a-b4c755ee677d&groupId=d4c2a937-f097-435a-bc91-5c1683ca7245"
    "&parentMessageId=1605223771864&teamName=Approvals&channelName=Azure%20DevOps&createdTime=1605223780000"
)
SOME_TEAM = "dc0ae126-1046-4c7b-8b56-991f55479a11"  # stands in for the docs' {teamId} placeholder
TEAM_004 = "7155e3c8-175e-4311-97ef-572edc3aa3db"
TEAM_003 = "e8bece96-d393-4b9b-b8da-69cedef1a7e7"
THREE_USERS = [
    {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": "569363e2-4e49-4661-87f2-16f245c5d66a"},
    {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": "ab88234e-0874-477c-9638-d144296ed04f"},
    {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": "01c64f53-69aa-42c7-9b7f-9f75195d6bfc"},
]
AAD_569 = {
    "@odata.type": "microsoft.graph.aadUserNotificationRecipient",
    "userId": "569363e2-4e49-4661-87f2-16f245c5d66a",
}
AAD_JACOB = {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": "jacob@contoso.com"}
FINANCE_PREVIEW = {"content": "Internal spending team has a pending finance approval requests"}
RESERVATION_PARAMS = [{"name": "reservationId", "value": "TREEE433"}, {"name": "currentSlot", "value": "23"}]
SOCIAL_TOPIC = {"source": "text", "value": "Weekly Virtual Social", "webUrl": WEB_URL}
DEPLOY_TOPIC = {"source": "text", "value": "Deployment Approvals Channel", "webUrl": WEB_URL}
CHAT_PATH = "/chats/{}/sendActivityNotification"
TEAM_PATH = "/teams/{}/sendActivityNotification"
BULK_PATH = "/teamwork/sendActivityNotificationToRecipients"

# (doc and example, path, body, expected status) -- bodies exactly as the docs print them.
EXAMPLES: list[tuple[str, str, dict[str, Any], int]] = [
    (
        # A beta page, but its body uses only v1.0 properties (keyValuePair's name and value are nullable).
        "000-1 question answered",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": {
                "source": "entityUrl",
                "value": "https://graph.microsoft.com/teams/dc0ae126-1046-4c7b-8b56-991f55479a11/channels/"
                "19:910b7d76f3564480a0e52e0671e0f116@thread.tacv2/messages/1591749374896",
            },
            "activityType": "questionAnswered",
            "previewText": {"content": "Your question has been answered"},
            "recipient": {
                "@odata.type": "microsoft.graph.aadUserNotificationRecipient",
                "userId": "598efcd4-e549-402a-9602-0b50201faebe",
            },
            "templateParameters": [{"@odata.type": "microsoft.graph.keyValuePair"}],
        },
        204,
    ),
    (
        "004-1 task in a chat",
        CHAT_PATH.format(CHAT),
        {
            "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/chats/{chatId}"},
            "activityType": "taskCreated",
            "previewText": {"content": "New Task Created"},
            "recipient": AAD_569,
            "templateParameters": [{"name": "taskId", "value": "12322"}],
        },
        204,
    ),
    (
        "004-2 task in a team",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/teams/{teamId}"},
            "activityType": "taskCreated",
            "previewText": {"content": "New Task Created"},
            "recipient": AAD_569,
            "templateParameters": [{"name": "taskId", "value": "12322"}],
        },
        204,
    ),
    (
        "004-3 custom topic",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": DEPLOY_TOPIC,
            "activityType": "approvalRequired",
            "previewText": {"content": "New deployment requires your approval"},
            "recipient": AAD_569,
            "templateParameters": [{"name": "deploymentId", "value": "6788662"}],
        },
        204,
    ),
    (
        "004-4 team members",
        TEAM_PATH.format(TEAM_004),
        {
            "topic": SOCIAL_TOPIC,
            "previewText": {"content": "It will be fun!"},
            "activityType": "eventCreated",
            "recipient": {"@odata.type": "microsoft.graph.teamMembersNotificationRecipient", "teamId": TEAM_004},
        },
        204,
    ),
    (
        "004-5 channel members",
        TEAM_PATH.format(TEAM_004),
        {
            "topic": SOCIAL_TOPIC,
            "previewText": {"content": "It will be fun!"},
            "activityType": "eventCreated",
            "recipient": {
                "@odata.type": "microsoft.graph.channelMembersNotificationRecipient",
                "teamId": TEAM_004,
                "channelId": "19:0ea5de04de4743bcb4cd20cb99235d99@thread.tacv2",
            },
        },
        204,
    ),
    (
        "004-6 chat members",
        CHAT_PATH.format(CHAT),
        {
            "topic": SOCIAL_TOPIC,
            "previewText": {"content": "It will be fun!"},
            "activityType": "eventCreated",
            "recipient": {"@odata.type": "microsoft.graph.chatMembersNotificationRecipient", "chatId": CHAT},
        },
        204,
    ),
    (
        "004-7 bulk",
        BULK_PATH,
        {
            "topic": {
                "source": "entityUrl",
                "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{teamsAppId}",
            },
            "activityType": "pendingFinanceApprovalRequests",
            "previewText": FINANCE_PREVIEW,
            "recipients": THREE_USERS,
            "templateParameters": [{"name": "pendingRequestCount", "value": "5"}],
        },
        202,
    ),
    (
        "004-8 systemDefault",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/teams/{teamId}"},
            "activityType": "systemDefault",
            "previewText": {"content": "Take a break"},
            "recipient": AAD_569,
            "templateParameters": [{"name": "systemDefaultText", "value": "You need to take a short break"}],
        },
        204,
    ),
    (
        "003-1 finance approvals",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/beta/teams/{teamId}"},
            "activityType": "pendingFinanceApprovalRequests",
            "previewText": FINANCE_PREVIEW,
            "recipient": AAD_569,
            "templateParameters": [{"name": "pendingRequestCount", "value": "5"}],
        },
        204,
    ),
    (
        "003-2 channel tab",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": {
                "source": "entityUrl",
                "value": "https://graph.microsoft.com/beta/teams/{teamId}/channels/{channelId}/tabs/{tabId}",
            },
            "activityType": "reservationUpdated",
            "previewText": {"content": "You have moved up the queue"},
            "recipient": AAD_569,
            "templateParameters": RESERVATION_PARAMS,
        },
        204,
    ),
    (
        "003-3 user principal name",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": {
                "source": "entityUrl",
                "value": "https://graph.microsoft.com/beta/teams/{teamId}/channels/{channelId}/tabs/{tabId}",
            },
            "activityType": "reservationUpdated",
            "previewText": {"content": "You have moved up the queue"},
            "recipient": AAD_JACOB,
            "templateParameters": RESERVATION_PARAMS,
        },
        204,
    ),
    (
        "003-4 custom topic",
        TEAM_PATH.format(SOME_TEAM),
        {
            "topic": DEPLOY_TOPIC,
            "activityType": "deploymentApprovalRequired",
            "previewText": {"content": "New deployment requires your approval"},
            "recipient": AAD_569,
            "templateParameters": [{"name": "deploymentId", "value": "6788662"}],
        },
        204,
    ),
    (
        "003-5 team members",
        TEAM_PATH.format(TEAM_003),
        {
            "topic": {"source": "entityUrl", "value": f"https://graph.microsoft.com/beta/teams/{TEAM_003}"},
            "activityType": "pendingFinanceApprovalRequests",
            "previewText": FINANCE_PREVIEW,
            "recipient": {"@odata.type": "microsoft.graph.teamMembersNotificationRecipient", "teamId": TEAM_003},
            "templateParameters": [{"name": "pendingRequestCount", "value": "5"}],
        },
        204,
    ),
    (
        "003-6 channel members",
        TEAM_PATH.format(TEAM_003),
        {
            "topic": {"source": "entityUrl", "value": f"https://graph.microsoft.com/beta/teams/{TEAM_003}"},
            "activityType": "pendingFinanceApprovalRequests",
            "previewText": FINANCE_PREVIEW,
            "recipient": {
                "@odata.type": "microsoft.graph.channelMembersNotificationRecipient",
                "teamId": TEAM_003,
                "channelId": "19:3d61a2309f094f4a9310b20f1db37520@thread.tacv2",
            },
            "templateParameters": [{"name": "pendingRequestCount", "value": "5"}],
        },
        204,
    ),
    (
        "003-7 channel message reply",
        TEAM_PATH.format(TEAM_003),
        {
            "topic": {
                "source": "entityUrl",
                "value": "https://graph.microsoft.com/beta/teams/{teamId}/channels/{channelId}/messages/{messageId}"
                "/replies/{replyId}",
            },
            "activityType": "reservationStatusUpdated",
            "previewText": {"content": "You have moved up the queue"},
            "recipient": AAD_JACOB,
            "templateParameters": RESERVATION_PARAMS,
        },
        204,
    ),
    (
        "002-1 bulk finance approvals",
        BULK_PATH,
        {
            "topic": {
                "source": "entityUrl",
                "value": "https://graph.microsoft.com/beta/appCatalogs/teamsApps/{teamsAppId}",
            },
            "activityType": "pendingFinanceApprovalRequests",
            "previewText": FINANCE_PREVIEW,
            "recipients": THREE_USERS,
            "templateParameters": [{"name": "pendingRequestCount", "value": "5"}],
        },
        202,
    ),
    (
        "002-2 bulk custom topic",
        BULK_PATH,
        {
            "topic": DEPLOY_TOPIC,
            "activityType": "deploymentApprovalRequired",
            "previewText": {"content": "New deployment requires your approval"},
            "templateParameters": [{"name": "deploymentId", "value": "6788662"}],
            "recipients": THREE_USERS,
        },
        202,
    ),
    (
        "002-3 bulk custom icon",
        BULK_PATH,
        {
            "topic": DEPLOY_TOPIC,
            "activityType": "announcementPosted",
            "previewText": {"content": "new announcemnet posted"},
            "iconId": "announcementCreated",
            "templateParameters": [{"name": "deploymentId", "value": "6788662"}],
            "recipients": THREE_USERS,
        },
        202,
    ),
]

# 001, the beta chat example, exactly as printed: a trailing comma, `type` instead of `source`, a bare
# string as previewText, and a chat id without `19:`.
BETA_001_TEXT = """{
    "topic": {
        "type": "graphResource",
        "value": "https://graph.microsoft.com/beta/chats/avc@thread.skype/messages/123456",
    },
    "activityType": "messageLiked",
    "chainId": 123456,
    "previewText": "message text here",
    "templateParameters": [{
        "name": "numberOfLikes",
        "value": "6"
    }]
}"""


@pytest.mark.parametrize(("name", "path", "body", "status"), EXAMPLES, ids=[example[0] for example in EXAMPLES])
def test_each_v1_example_body_is_accepted_with_graphs_status(
    graph: Graph, name: str, path: str, body: dict[str, Any], status: int
) -> None:
    response = graph.post(path, body)
    assert response.status_code == status, response.text
    assert response.content == b""


def test_the_beta_chat_example_is_refused_as_printed(graph: Graph) -> None:
    response = graph.http.post(
        "/v1.0/chats/avc@thread.skype/sendActivityNotification",
        content=BETA_001_TEXT,
        headers={"Authorization": f"Bearer {graph.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_the_beta_chat_example_is_refused_even_with_its_json_and_chat_id_repaired(graph: Graph) -> None:
    body = {
        "topic": {
            "type": "graphResource",
            "value": "https://graph.microsoft.com/beta/chats/avc@thread.skype/messages/1",
        },
        "activityType": "messageLiked",
        "chainId": 123456,
        "previewText": "message text here",
        "templateParameters": [{"name": "numberOfLikes", "value": "6"}],
    }
    response = graph.post(CHAT_PATH.format(CHAT), body)
    assert response.status_code == 400
    assert "topic.type" in response.json()["error"]["message"]
