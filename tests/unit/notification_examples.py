"""Notification bodies the unit tests share: Microsoft's documented examples, valid bodies, invalid ones."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from producers.models import Endpoint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

#: Every request body of Microsoft's docs of the four endpoints (see tests/fixtures/README.md).
REFERENCE_EXAMPLES: list[dict[str, Any]] = json.loads(
    (FIXTURES / "reference_examples.json").read_text(encoding="utf-8")
)
V1_EXAMPLES = [example for example in REFERENCE_EXAMPLES if example["v1"]]
BETA_EXAMPLES = [example for example in REFERENCE_EXAMPLES if not example["v1"]]

USER = "569363e2-4e49-4661-87f2-16f245c5d66a"
UPN = "jacob@contoso.com"
TEAM = "e8bece96-d393-4b9b-b8da-69cedef1a7e7"
OTHER_TEAM = "7155e3c8-175e-4311-97ef-572edc3aa3db"
CHAT = "19:d65713bc498c4a428c71ef9353e6ce20@thread.v2"
OTHER_CHAT = "19:448cfd2ac2a7490a9084a9ed14cttr78c@thread.v2"
CHANNEL = "19:3d61a2309f094f4a9310b20f1db37520@thread.tacv2"
TENANT = "c8b1bf45-3834-4ecf-971a-b4c755ee677d"

AAD_USER = "microsoft.graph.aadUserNotificationRecipient"
TEAM_MEMBERS = "microsoft.graph.teamMembersNotificationRecipient"
CHAT_MEMBERS = "microsoft.graph.chatMembersNotificationRecipient"
CHANNEL_MEMBERS = "microsoft.graph.channelMembersNotificationRecipient"


def common(**changes: Any) -> dict[str, Any]:
    """What every endpoint's body carries, valid as it stands; `changes` replace (None removes) keys."""
    body: dict[str, Any] = {
        "topic": {
            "source": "text",
            "value": "Deployment Approvals Channel",
            "webUrl": "https://teams.microsoft.com/l/message/19:448cfd2ac2a7490a9084a9ed14cttr78c@thread.skype/1",
        },
        "activityType": "deploymentApprovalRequired",
        "previewText": {"content": "New deployment requires your approval"},
        "templateParameters": [{"name": "deploymentId", "value": "6788662"}],
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def aad_user(user_id: str = USER) -> dict[str, str]:
    return {"@odata.type": AAD_USER, "userId": user_id}


def user_body(**changes: Any) -> dict[str, Any]:
    return common(**changes)


def chat_body(**changes: Any) -> dict[str, Any]:
    return common(recipient={"@odata.type": CHAT_MEMBERS, "chatId": CHAT}, **changes)


def team_body(**changes: Any) -> dict[str, Any]:
    return common(recipient={"@odata.type": TEAM_MEMBERS, "teamId": TEAM}, **changes)


def user_ids(count: int) -> list[str]:
    """`count` distinct user object ids."""
    return [f"00000000-0000-4000-8000-{i:012d}" for i in range(count)]


def bulk_body(count: int = 3, **changes: Any) -> dict[str, Any]:
    return common(recipients=[aad_user(uid) for uid in user_ids(count)], **changes)


def with_topic(**topic: Any) -> dict[str, Any]:
    """A user body whose topic is exactly `topic`."""
    return user_body(topic=topic)


def with_preview(preview: Any) -> dict[str, Any]:
    return user_body(previewText=preview)


@dataclass(frozen=True)
class Invalid:
    """A body (or id) Graph would refuse, and the field the error must name."""

    name: str
    endpoint: Endpoint
    target: str | None
    body: Any
    field: str
    #: Other names the error may give instead (a typo is both an unknown field and a missing one).
    or_field: str | None = None

    def fresh_body(self) -> Any:
        return copy.deepcopy(self.body)

    def __str__(self) -> str:
        return self.name


_typo = user_body(activityType=None)
_typo["activitytype"] = "deploymentApprovalRequired"

#: At least one of each kind of body or id the producers must refuse before anything is enqueued.
INVALID: list[Invalid] = [
    Invalid("unknown top-level field (a typo)", Endpoint.USER, USER, _typo, "activitytype", "activityType"),
    Invalid("unknown field next to a valid body", Endpoint.USER, USER, user_body(sender="me"), "sender"),
    Invalid(
        "unknown field inside topic",
        Endpoint.USER,
        USER,
        with_topic(source="text", value="x", webURL="https://teams.microsoft.com/l/x"),
        "topic.webURL",
    ),
    Invalid("missing topic", Endpoint.USER, USER, user_body(topic=None), "topic"),
    Invalid(
        "topic.source neither entityUrl nor text",
        Endpoint.USER,
        USER,
        with_topic(source="graphResource", value="https://graph.microsoft.com/v1.0/teams/x"),
        "topic.source",
    ),
    Invalid("text topic without webUrl", Endpoint.USER, USER, with_topic(source="text", value="x"), "webUrl"),
    Invalid(
        "http webUrl",
        Endpoint.USER,
        USER,
        with_topic(source="text", value="x", webUrl="http://teams.microsoft.com/l/x"),
        "topic.webUrl",
    ),
    Invalid(
        "entityUrl topic whose value is no URL",
        Endpoint.USER,
        USER,
        with_topic(source="entityUrl", value="teams/1234"),
        "topic",
    ),
    Invalid("missing activityType", Endpoint.USER, USER, user_body(activityType=None), "activityType"),
    Invalid("empty activityType", Endpoint.USER, USER, user_body(activityType=""), "activityType"),
    Invalid("activityType not a string", Endpoint.USER, USER, user_body(activityType=7), "activityType"),
    Invalid("previewText a string", Endpoint.USER, USER, with_preview("message text here"), "previewText"),
    Invalid("previewText without content", Endpoint.USER, USER, with_preview({}), "previewText.content"),
    Invalid(
        "previewText.content not a string", Endpoint.USER, USER, with_preview({"content": 5}), "previewText.content"
    ),
    Invalid(
        "templateParameters not a list",
        Endpoint.USER,
        USER,
        user_body(templateParameters={"deploymentId": "6788662"}),
        "templateParameters",
    ),
    Invalid(
        "template parameter with a name but no value",
        Endpoint.USER,
        USER,
        user_body(templateParameters=[{"name": "deploymentId"}]),
        "templateParameters[0]",
    ),
    Invalid(
        "template parameter value not a string",
        Endpoint.USER,
        USER,
        user_body(templateParameters=[{"name": "count", "value": 5}]),
        "templateParameters[0].value",
    ),
    Invalid("chainId a string", Endpoint.USER, USER, user_body(chainId="123456"), "chainId"),
    Invalid("chainId a float", Endpoint.USER, USER, user_body(chainId=1.5), "chainId"),
    Invalid("chainId a bool", Endpoint.USER, USER, user_body(chainId=True), "chainId"),
    Invalid("chainId beyond int64", Endpoint.USER, USER, user_body(chainId=2**63), "chainId"),
    Invalid("chainId below int64", Endpoint.USER, USER, user_body(chainId=-(2**63) - 1), "chainId"),
    Invalid("empty teamsAppId", Endpoint.USER, USER, user_body(teamsAppId=""), "teamsAppId"),
    Invalid("recipient on the user endpoint", Endpoint.USER, USER, user_body(recipient=aad_user()), "recipient"),
    Invalid(
        "chat recipient of kind teamMembers",
        Endpoint.CHAT,
        CHAT,
        common(recipient={"@odata.type": TEAM_MEMBERS, "teamId": TEAM}),
        "recipient",
    ),
    Invalid("chat send without recipient", Endpoint.CHAT, CHAT, common(), "recipient"),
    Invalid(
        "recipient without @odata.type",
        Endpoint.TEAM,
        TEAM,
        common(recipient={"userId": USER}),
        "recipient",
    ),
    Invalid(
        "team recipient naming another team than the URL",
        Endpoint.TEAM,
        TEAM,
        common(recipient={"@odata.type": TEAM_MEMBERS, "teamId": OTHER_TEAM}),
        "recipient.teamId",
    ),
    Invalid(
        "channel recipient naming another team than the URL",
        Endpoint.TEAM,
        TEAM,
        common(recipient={"@odata.type": CHANNEL_MEMBERS, "teamId": OTHER_TEAM, "channelId": CHANNEL}),
        "recipient.teamId",
    ),
    Invalid(
        "chatMembers recipient naming another chat than the URL",
        Endpoint.CHAT,
        CHAT,
        common(recipient={"@odata.type": CHAT_MEMBERS, "chatId": OTHER_CHAT}),
        "recipient.chatId",
    ),
    Invalid(
        "malformed channel id",
        Endpoint.TEAM,
        TEAM,
        common(recipient={"@odata.type": CHANNEL_MEMBERS, "teamId": TEAM, "channelId": "general"}),
        "recipient.channelId",
    ),
    Invalid(
        "bulk recipient of another kind",
        Endpoint.RECIPIENTS,
        None,
        common(recipients=[aad_user(), {"@odata.type": TEAM_MEMBERS, "teamId": TEAM}]),
        "recipients[1]",
    ),
    Invalid("bulk with zero recipients", Endpoint.RECIPIENTS, None, common(recipients=[]), "recipients"),
    Invalid("bulk without recipients", Endpoint.RECIPIENTS, None, common(), "recipients"),
    Invalid("recipients not a list", Endpoint.RECIPIENTS, None, common(recipients=aad_user()), "recipients"),
    Invalid(
        "bulk recipient with a bad user id",
        Endpoint.RECIPIENTS,
        None,
        common(recipients=[aad_user(), aad_user("../me")]),
        "recipients[1]",
    ),
    Invalid("user id that climbs the path", Endpoint.USER, "../me", user_body(), "user_id"),
    Invalid("user id with a query", Endpoint.USER, f"{USER}?$select=id", user_body(), "user_id"),
    Invalid("team id not a GUID", Endpoint.TEAM, "finance-team", team_body(), "team_id"),
    Invalid("chat id not 19:...@thread", Endpoint.CHAT, "avc@thread.skype", chat_body(), "chat_id"),
    Invalid("body a list", Endpoint.USER, USER, [user_body()], "body"),
    Invalid("body a JSON string", Endpoint.USER, USER, json.dumps(user_body()), "body"),
    Invalid("body None", Endpoint.RECIPIENTS, None, None, "body"),
]
