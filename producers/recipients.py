"""The recipients of a chat, team or bulk notification, and which kinds each endpoint takes.

A recipient's kind is its `@odata.type`; a kind the endpoint does not take is refused with the list of those
it does.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, StrictStr, Tag

from producers.schema import ODATA_PREFIX, ChannelId, ChatId, GraphModel, TeamId, UserId, odata_type_field


class AadUserRecipient(GraphModel):
    """aadUserNotificationRecipient: one user, by object id or UPN."""

    odata_type: StrictStr = odata_type_field("aadUserNotificationRecipient")
    user_id: UserId


class ChatMembersRecipient(GraphModel):
    """chatMembersNotificationRecipient: every member of the chat in the URL."""

    odata_type: StrictStr = odata_type_field("chatMembersNotificationRecipient")
    chat_id: ChatId


class TeamMembersRecipient(GraphModel):
    """teamMembersNotificationRecipient: every member of the team in the URL."""

    odata_type: StrictStr = odata_type_field("teamMembersNotificationRecipient")
    team_id: TeamId


class ChannelMembersRecipient(GraphModel):
    """channelMembersNotificationRecipient: every member of one channel of the team in the URL."""

    odata_type: StrictStr = odata_type_field("channelMembersNotificationRecipient")
    team_id: TeamId
    channel_id: ChannelId


def _recipient_kind(value: Any) -> str | None:
    odata = value.get("@odata.type") if isinstance(value, dict) else getattr(value, "odata_type", None)
    if not isinstance(odata, str):
        return None
    return odata.removeprefix("#").removeprefix(ODATA_PREFIX)


_WRONG_KIND = "recipient_kind"


def _one_of(*kinds: str) -> Discriminator:
    return Discriminator(
        _recipient_kind,
        custom_error_type=_WRONG_KIND,
        custom_error_message="@odata.type must be one of " + ", ".join(ODATA_PREFIX + k for k in kinds),
    )


ChatRecipient = Annotated[
    Annotated[AadUserRecipient, Tag("aadUserNotificationRecipient")]
    | Annotated[ChatMembersRecipient, Tag("chatMembersNotificationRecipient")],
    _one_of("aadUserNotificationRecipient", "chatMembersNotificationRecipient"),
]
TeamRecipient = Annotated[
    Annotated[AadUserRecipient, Tag("aadUserNotificationRecipient")]
    | Annotated[TeamMembersRecipient, Tag("teamMembersNotificationRecipient")]
    | Annotated[ChannelMembersRecipient, Tag("channelMembersNotificationRecipient")],
    _one_of(
        "aadUserNotificationRecipient",
        "teamMembersNotificationRecipient",
        "channelMembersNotificationRecipient",
    ),
]
BulkRecipient = Annotated[
    Annotated[AadUserRecipient, Tag("aadUserNotificationRecipient")],
    _one_of("aadUserNotificationRecipient"),
]
