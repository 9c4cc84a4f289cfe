"""Pydantic models of Graph v1.0's four sendActivityNotification request bodies, and of a job.

The models accept a body exactly as Microsoft documents it (camelCase, `@odata.type`), refuse unknown
fields so a typo never reaches Graph, and validate a little earlier than Graph would. Serialised back
(`wire()`), a body is what the caller gave, key for key, except that a bulk body's duplicate recipients
are removed.

This module holds the endpoints and validates a body for one (`parse_body`, `parse_bulk`); the models live in
`producers.bodies` (the four bodies), `producers.recipients` and `producers.schema` (their building blocks),
their size limits in `producers.limits`. Every name callers use is importable from here too.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, cast

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from producers import ids
from producers.bodies import (
    ChatNotification,
    ItemBody,
    KeyValuePair,
    NotificationBody,
    RecipientsNotification,
    TeamNotification,
    Topic,
    UserNotification,
)
from producers.errors import InvalidNotification
from producers.limits import MAX_PREVIEW_BYTES, MAX_RECIPIENTS_PER_REQUEST, MAX_URL_LENGTH, PREVIEW_SHOWN
from producers.recipients import (
    AadUserRecipient,
    BulkRecipient,
    ChannelMembersRecipient,
    ChatMembersRecipient,
    ChatRecipient,
    TeamMembersRecipient,
    TeamRecipient,
)
from producers.schema import ODATA_PREFIX, ChannelId, ChatId, GraphModel, HttpsUrl, TeamId, UserId

__all__ = [
    "BODY_MODELS",
    "MAX_PREVIEW_BYTES",
    "MAX_RECIPIENTS_PER_REQUEST",
    "MAX_URL_LENGTH",
    "PREVIEW_SHOWN",
    "AadUserRecipient",
    "BulkRecipient",
    "ChannelId",
    "ChannelMembersRecipient",
    "ChatId",
    "ChatMembersRecipient",
    "ChatNotification",
    "ChatRecipient",
    "Endpoint",
    "GraphModel",
    "HttpsUrl",
    "ItemBody",
    "KeyValuePair",
    "NotificationBody",
    "RecipientsNotification",
    "TeamId",
    "TeamMembersRecipient",
    "TeamNotification",
    "TeamRecipient",
    "Topic",
    "UserId",
    "UserNotification",
    "parse_body",
    "parse_bulk",
]

log = logging.getLogger(__name__)


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
_AAD_USER_TYPES = frozenset(
    {ODATA_PREFIX + "aadUserNotificationRecipient", "#" + ODATA_PREFIX + "aadUserNotificationRecipient"}
)


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
