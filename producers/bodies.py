"""The four sendActivityNotification request bodies, and the parts they share (topic, preview, parameters)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr, ValidationInfo, field_validator, model_validator

from producers.limits import MAX_PREVIEW_BYTES, PREVIEW_SHOWN
from producers.recipients import AadUserRecipient, BulkRecipient, ChatRecipient, TeamRecipient
from producers.schema import ODATA_PREFIX, GraphModel, HttpsUrl, check_https_url, check_url_length, odata_type_field

_INT64 = (-(2**63), 2**63 - 1)


class Topic(GraphModel):
    """teamworkActivityTopic: what the feed item links to."""

    source: Literal["entityUrl", "text"]
    value: Annotated[StrictStr, Field(min_length=1), AfterValidator(check_url_length)]
    web_url: HttpsUrl | None = Field(default=None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _entity_url(cls, value: str, info: ValidationInfo) -> str:
        """An `entityUrl` topic's value is the https URL of a Graph resource."""
        return check_https_url(value) if info.data.get("source") == "entityUrl" else value

    @field_validator("web_url")
    @classmethod
    def _web_url_for_text(cls, web_url: str | None, info: ValidationInfo) -> str | None:
        """A `text` topic has no resource to open, so it needs a webUrl."""
        if web_url is None and info.data.get("source") == "text":
            raise ValueError("webUrl is required when topic.source is 'text'")
        return web_url


class ItemBody(GraphModel):
    """itemBody: the preview text (Teams shows its first 150 characters)."""

    content: StrictStr
    content_type: Literal["text", "html"] | None = None

    @field_validator("content")
    @classmethod
    def _bounded(cls, content: str) -> str:
        size = len(content.encode("utf-8"))
        if size >= MAX_PREVIEW_BYTES:
            raise ValueError(
                f"{size:,} bytes: {MAX_PREVIEW_BYTES // 1024} KB or more is refused "
                f"(Teams shows the first {PREVIEW_SHOWN} characters)"
            )
        return content


class KeyValuePair(GraphModel):
    """keyValuePair: one template parameter of the activity type."""

    odata_type: StrictStr = odata_type_field("keyValuePair", default=ODATA_PREFIX + "keyValuePair")
    name: StrictStr | None = None
    value: StrictStr | None = None

    @model_validator(mode="after")
    def _name_with_value(self) -> KeyValuePair:
        if (self.name is None) != (self.value is None):
            raise ValueError("a template parameter needs both a name and a value")
        return self


class NotificationBody(GraphModel):
    """What every sendActivityNotification body carries."""

    topic: Topic
    activity_type: Annotated[StrictStr, Field(min_length=1)]
    preview_text: ItemBody
    template_parameters: list[KeyValuePair] | None = None
    chain_id: Annotated[StrictInt, Field(ge=_INT64[0], le=_INT64[1])] | None = None
    teams_app_id: Annotated[StrictStr, Field(min_length=1)] | None = None
    icon_id: Annotated[StrictStr, Field(min_length=1)] | None = None

    def notes(self) -> list[str]:
        """What Graph accepts but Teams will not show in full: worth a warning, and a note on the job."""
        shown = len(self.preview_text.content)
        if shown > PREVIEW_SHOWN:
            return [f"previewText.content: {shown} characters; Teams shows only the first {PREVIEW_SHOWN}"]
        return []


class UserNotification(NotificationBody):
    """POST /users/{id}/teamwork/sendActivityNotification: the user is in the URL, not the body."""


class ChatNotification(NotificationBody):
    """POST /chats/{id}/sendActivityNotification."""

    recipient: ChatRecipient


class TeamNotification(NotificationBody):
    """POST /teams/{id}/sendActivityNotification."""

    recipient: TeamRecipient


class RecipientsNotification(NotificationBody):
    """POST /teamwork/sendActivityNotificationToRecipients, any number of users (sent 100 at a time)."""

    recipients: Annotated[list[BulkRecipient], Field(min_length=1)]

    @field_validator("recipients")
    @classmethod
    def _without_duplicates(cls, recipients: list[AadUserRecipient]) -> list[AadUserRecipient]:
        """A user named twice (ids are case-insensitive) is notified once."""
        seen: set[str] = set()
        unique = []
        for recipient in recipients:
            key = recipient.user_id.lower()
            if key not in seen:
                seen.add(key)
                unique.append(recipient)
        return unique
