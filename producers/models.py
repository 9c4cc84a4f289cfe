"""Pydantic models of Graph v1.0's four sendActivityNotification request bodies, and of a job.

The models accept a body exactly as Microsoft documents it (camelCase, `@odata.type`), refuse unknown
fields so a typo never reaches Graph, and validate a little earlier than Graph would. Serialised back
(`wire()`), a body is what the caller gave, key for key, except that a bulk body's duplicate recipients
are removed.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from producers import ids
from producers.errors import InvalidNotification

#: Graph takes at most this many recipients in one sendActivityNotificationToRecipients request.
MAX_RECIPIENTS_PER_REQUEST = 100

#: The longest `topic.webUrl` and `topic.value` accepted, in characters. Graph documents no limit; field
#: reports show it refusing a `webUrl` over 1,024 characters, so a sender near this bound should test its
#: own links against Graph. Lower it here to refuse such links at enqueue time.
MAX_URL_LENGTH = 2048

#: `previewText.content` of this many bytes (UTF-8) or more is refused: Teams shows 150 characters, so a
#: body this large is a mistake (a whole document pasted as the preview), not a notification.
MAX_PREVIEW_BYTES = 64 * 1024

#: Teams shows only this many characters of `previewText.content`; a longer one is sent, with a warning.
PREVIEW_SHOWN = 150

log = logging.getLogger(__name__)

_INT64 = (-(2**63), 2**63 - 1)
_ODATA = "microsoft.graph."


class Endpoint(StrEnum):
    """The four Graph actions, named as the `notify_*` calls and the CLI name them."""

    USER = "user"
    CHAT = "chat"
    TEAM = "team"
    RECIPIENTS = "recipients"

    def path(self, target: str | None) -> str:
        """The Graph path of this action, with the target id percent-encoded into it."""
        if self is Endpoint.RECIPIENTS:
            return "/teamwork/sendActivityNotificationToRecipients"
        if target is None:
            raise ValueError(f"a {self.value} notification needs a target id")
        segment = ids.path_segment(target)
        if self is Endpoint.USER:
            return f"/users/{segment}/teamwork/sendActivityNotification"
        return f"/{self.value}s/{segment}/sendActivityNotification"


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{value!r} is not an https URL")
    return value


def _within_url_limit(value: str) -> str:
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"{len(value):,} characters, more than the {MAX_URL_LENGTH:,} allowed (MAX_URL_LENGTH)")
    return value


HttpsUrl = Annotated[StrictStr, AfterValidator(_within_url_limit), AfterValidator(_https_url)]
UserId = Annotated[StrictStr, AfterValidator(ids.check_user_id)]
TeamId = Annotated[StrictStr, AfterValidator(ids.check_team_id)]
ChatId = Annotated[StrictStr, AfterValidator(ids.check_chat_id)]
ChannelId = Annotated[StrictStr, AfterValidator(ids.check_channel_id)]


class GraphModel(BaseModel):
    """Graph's wire form: camelCase names, unknown fields refused, only what was given written back."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, extra="forbid", frozen=True
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict Graph receives."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _odata(name: str, **kwargs: Any) -> Any:
    """An `@odata.type` field of the given Graph type, with or without OData's leading `#`."""
    full = _ODATA + name
    return Field(alias="@odata.type", pattern=rf"^#?{full.replace('.', '[.]')}$", **kwargs)


class Topic(GraphModel):
    """teamworkActivityTopic: what the feed item links to."""

    source: Literal["entityUrl", "text"]
    value: Annotated[StrictStr, Field(min_length=1), AfterValidator(_within_url_limit)]
    web_url: HttpsUrl | None = Field(default=None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _entity_url(cls, value: str, info: ValidationInfo) -> str:
        """An `entityUrl` topic's value is the https URL of a Graph resource."""
        return _https_url(value) if info.data.get("source") == "entityUrl" else value

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

    odata_type: StrictStr = _odata("keyValuePair", default=_ODATA + "keyValuePair")
    name: StrictStr | None = None
    value: StrictStr | None = None

    @model_validator(mode="after")
    def _name_with_value(self) -> KeyValuePair:
        if (self.name is None) != (self.value is None):
            raise ValueError("a template parameter needs both a name and a value")
        return self


class AadUserRecipient(GraphModel):
    """aadUserNotificationRecipient: one user, by object id or UPN."""

    odata_type: StrictStr = _odata("aadUserNotificationRecipient")
    user_id: UserId


class ChatMembersRecipient(GraphModel):
    """chatMembersNotificationRecipient: every member of the chat in the URL."""

    odata_type: StrictStr = _odata("chatMembersNotificationRecipient")
    chat_id: ChatId


class TeamMembersRecipient(GraphModel):
    """teamMembersNotificationRecipient: every member of the team in the URL."""

    odata_type: StrictStr = _odata("teamMembersNotificationRecipient")
    team_id: TeamId


class ChannelMembersRecipient(GraphModel):
    """channelMembersNotificationRecipient: every member of one channel of the team in the URL."""

    odata_type: StrictStr = _odata("channelMembersNotificationRecipient")
    team_id: TeamId
    channel_id: ChannelId


def _recipient_kind(value: Any) -> str | None:
    odata = value.get("@odata.type") if isinstance(value, dict) else getattr(value, "odata_type", None)
    if not isinstance(odata, str):
        return None
    return odata.removeprefix("#").removeprefix(_ODATA)


_WRONG_KIND = "recipient_kind"


def _one_of(*kinds: str) -> Discriminator:
    return Discriminator(
        _recipient_kind,
        custom_error_type=_WRONG_KIND,
        custom_error_message="@odata.type must be one of " + ", ".join(_ODATA + k for k in kinds),
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


BODY_MODELS: dict[Endpoint, type[NotificationBody]] = {
    Endpoint.USER: UserNotification,
    Endpoint.CHAT: ChatNotification,
    Endpoint.TEAM: TeamNotification,
    Endpoint.RECIPIENTS: RecipientsNotification,
}


def _field_of(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path into the JSON body: `recipients[3].userId`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.endswith("Recipient") and path:
            continue  # the discriminator's tag, not a field of the body
        else:
            path += ("." if path else "") + part
    return path or "body"


def parse_body(endpoint: Endpoint, body: object, target: str | None = None) -> NotificationBody:
    """Validates a body for one endpoint (and its target id) as Graph would, a little earlier.

    Raises:
        InvalidNotification: naming the offending field; nothing should be enqueued.
    """
    model = BODY_MODELS[endpoint]
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if not isinstance(body, dict):
        raise InvalidNotification(f"the body must be a JSON object, not {type(body).__name__}", "body")
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # An unknown field first: a typo ("activitytype") also makes the real field look missing.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        field = _field_of(tuple(first["loc"]))
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field (Graph v1.0 has no such property)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidNotification(f"invalid {endpoint.value} notification: {field}: {message}{more}", field) from None
    _check_target(endpoint, parsed, target)
    for note in parsed.notes():
        log.warning("%s notification (activityType %r): %s", endpoint.value, parsed.activity_type, note)
    return parsed


#: The two spellings of a bulk recipient's type that Graph takes.
_AAD_USER_TYPES = frozenset({_ODATA + "aadUserNotificationRecipient", "#" + _ODATA + "aadUserNotificationRecipient"})


def parse_bulk(body: object) -> tuple[RecipientsNotification, list[dict[str, Any]], bool]:
    """A bulk body validated as `parse_body` would, fast for any number of recipients.

    The body is validated by the model with its first recipient only; the recipients are then checked by a
    plain loop (a dict of `@odata.type` and `userId`, a GUID or UPN) and duplicates dropped, without a model
    per recipient. If any recipient fails that check, the whole body goes through the model, so the error
    is the one `parse_body` gives. Returns the model (first recipient only), the unique recipients as
    given (not copied), and whether every one is a plain `microsoft.graph.aadUserNotificationRecipient`.
    """
    if isinstance(body, BaseModel) or not isinstance(body, dict) or not isinstance(body.get("recipients"), list):
        parsed = parse_body(Endpoint.RECIPIENTS, body)
        return _split(cast(RecipientsNotification, parsed))
    recipients: list[Any] = body["recipients"]
    head = cast(RecipientsNotification, parse_body(Endpoint.RECIPIENTS, {**body, "recipients": recipients[:1]}))
    seen: set[str] = set()
    unique: list[dict[str, Any]] = []
    plain = True
    for recipient in recipients:
        if type(recipient) is not dict or len(recipient) != 2:
            return _split(cast(RecipientsNotification, parse_body(Endpoint.RECIPIENTS, body)))
        odata, user_id = recipient.get("@odata.type"), recipient.get("userId")
        if odata not in _AAD_USER_TYPES or type(user_id) is not str or not ids.is_user_id(user_id):
            return _split(cast(RecipientsNotification, parse_body(Endpoint.RECIPIENTS, body)))
        key = user_id.lower()
        if key not in seen:
            seen.add(key)
            unique.append(recipient)
            plain = plain and odata[0] != "#"
    return head, unique, plain


def _split(parsed: RecipientsNotification) -> tuple[RecipientsNotification, list[dict[str, Any]], bool]:
    recipients = parsed.wire()["recipients"]
    return parsed, recipients, all(r["@odata.type"][0] != "#" for r in recipients)


def _check_target(endpoint: Endpoint, body: NotificationBody, target: str | None) -> None:
    """Checks the URL's id, and that a members recipient names the same team or chat as the URL."""
    checks = {
        Endpoint.USER: ("user_id", ids.check_user_id),
        Endpoint.CHAT: ("chat_id", ids.check_chat_id),
        Endpoint.TEAM: ("team_id", ids.check_team_id),
    }
    if endpoint not in checks:
        return
    name, check = checks[endpoint]
    if not isinstance(target, str):
        raise InvalidNotification(f"{name} must be a string, not {type(target).__name__}", name)
    try:
        check(target)
    except ValueError as exc:
        raise InvalidNotification(f"{name}: {exc}", name) from None
    recipient = getattr(body, "recipient", None)
    named = getattr(recipient, name, None)
    if named is not None and named.lower() != target.lower():
        field = "recipient." + to_camel(name)
        raise InvalidNotification(f"{field} {named!r} must be the {endpoint.value} of the URL, {target!r}", field)
