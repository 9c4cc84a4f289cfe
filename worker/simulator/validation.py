"""Checks of a send's path id and body the way Graph v1.0 makes them; every refusal names the field."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Graph's limit on recipients in one bulk request.
MAX_BULK_RECIPIENTS = 100
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

AAD_USER = "microsoft.graph.aadUserNotificationRecipient"
CHAT_MEMBERS = "microsoft.graph.chatMembersNotificationRecipient"
TEAM_MEMBERS = "microsoft.graph.teamMembersNotificationRecipient"
CHANNEL_MEMBERS = "microsoft.graph.channelMembersNotificationRecipient"
KEY_VALUE_PAIR = "microsoft.graph.keyValuePair"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_UPN = re.compile(
    r"^[^@\s/\\?#]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_CHAT = re.compile(r"^19:[^\s/@]+@(?:thread\.(?:v2|skype|tacv2)|unq\.gbl\.spaces)$")
_CHANNEL = re.compile(r"^19:[^\s/@]+@thread\.(?:tacv2|skype)$")

_COMMON_KEYS = frozenset(
    {"topic", "activityType", "previewText", "templateParameters", "chainId", "teamsAppId", "iconId"}
)
_ALLOWED_KEYS = {
    "user": _COMMON_KEYS,
    "chat": _COMMON_KEYS | {"recipient"},
    "team": _COMMON_KEYS | {"recipient"},
    "bulk": _COMMON_KEYS | {"recipients"},
}
_RECIPIENT_TYPES = {
    "chat": (AAD_USER, CHAT_MEMBERS),
    "team": (AAD_USER, TEAM_MEMBERS, CHANNEL_MEMBERS),
    "bulk": (AAD_USER,),
}
_RECIPIENT_KEYS = {
    AAD_USER: ("userId",),
    CHAT_MEMBERS: ("chatId",),
    TEAM_MEMBERS: ("teamId",),
    CHANNEL_MEMBERS: ("teamId", "channelId"),
}
_ACTION_TYPES = {
    "user": "microsoft.graph.sendActivityNotification",
    "chat": "microsoft.graph.sendActivityNotification",
    "team": "microsoft.graph.sendActivityNotification",
    "bulk": "microsoft.graph.sendActivityNotificationToRecipients",
}
_JSON_ERROR = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
)


class InvalidRequest(ValueError):
    """A request Graph refuses with 400 BadRequest; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class Notification:
    """What the rest of the pipeline needs from a valid body: the users it names and how many recipients."""

    users: tuple[str, ...]
    recipients: int
    teams_app_id: str | None


def parse_json(raw: bytes, content_type: str | None) -> Any:
    """The JSON body, strictly: UTF-8, no NaN, no duplicate keys, Content-Type application/json."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise InvalidRequest(_JSON_ERROR)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(_JSON_ERROR) from exc


def _refuse_constant(name: str) -> None:
    """JSON has no NaN or Infinity; Python's parser would accept them."""
    raise ValueError(f"invalid JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object, refusing a key given twice (OData readers refuse duplicate properties)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate property")
    return result


def check_target(kind: str, target: str | None) -> None:
    """The id in the URL must be the kind of id its segment names."""
    if kind == "user" and not (target and (_GUID.match(target) or _UPN.match(target))):
        raise InvalidRequest(f"Invalid user id {target!r} in the URL: expected a GUID or a user principal name.")
    if kind == "chat" and not (target and _CHAT.match(target)):
        raise InvalidRequest(f"Invalid chat id {target!r} in the URL: expected 19:...@thread.v2 or similar.")
    if kind == "team" and not (target and _GUID.match(target)):
        raise InvalidRequest(f"Invalid team id {target!r} in the URL: expected a GUID.")


def validate_body(kind: str, target: str | None, body: Any) -> Notification:
    """Checks a parsed body for endpoint `kind` (user, chat, team, bulk) addressed to `target`."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    _known_keys(body, _ALLOWED_KEYS[kind], _ACTION_TYPES[kind], "")
    _check_topic(_required(body, "topic", ""))
    activity_type = _required(body, "activityType", "")
    if not isinstance(activity_type, str) or not activity_type.strip():
        raise InvalidRequest("activityType must be a non-empty string.")
    if "previewText" in body:
        _check_preview_text(body["previewText"])
    if "templateParameters" in body:
        _check_template_parameters(body["templateParameters"])
    if "chainId" in body:
        chain_id = body["chainId"]
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not INT64_MIN <= chain_id <= INT64_MAX:
            raise InvalidRequest(f"chainId must be an Int64 integer, not {chain_id!r}.")
    for name in ("teamsAppId", "iconId"):
        if name in body and (not isinstance(body[name], str) or not body[name].strip()):
            raise InvalidRequest(f"{name} must be a non-empty string, not {body[name]!r}.")
    teams_app_id = body.get("teamsAppId")
    if kind == "user":
        return Notification((target.lower(),) if target else (), 1, teams_app_id)
    if kind == "bulk":
        users = _check_bulk_recipients(_required(body, "recipients", ""))
        return Notification(users, len(users), teams_app_id)
    user = _check_recipient(_required(body, "recipient", ""), kind, target or "", "recipient")
    return Notification((user,) if user else (), 1, teams_app_id)


def _required(obj: Mapping[str, Any], name: str, prefix: str) -> Any:
    """The value of a required property, or the 400 naming it."""
    if name not in obj or obj[name] is None:
        raise InvalidRequest(f"The required property '{prefix}{name}' is missing.")
    return obj[name]


def _known_keys(obj: Mapping[str, Any], allowed: frozenset[str], type_name: str, prefix: str) -> None:
    """Refuses properties the type does not define, as Graph's OData reader does."""
    for key in obj:
        if key == "@odata.type" and prefix:
            continue
        if key not in allowed:
            raise InvalidRequest(
                f"The property '{prefix}{key}' does not exist on type '{type_name}'. "
                "Make sure to only use property names that are defined by the type."
            )


def _object(value: Any, name: str) -> dict[str, Any]:
    """A JSON object, or the 400 naming the field."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be a JSON object, not {type(value).__name__}.")
    return value


def _odata_type(obj: Mapping[str, Any]) -> str | None:
    """The `@odata.type` of an object, with or without its leading '#'."""
    value = obj.get("@odata.type")
    return value.removeprefix("#") if isinstance(value, str) else None


def _is_https_url(value: Any) -> bool:
    """An absolute https URL with a host."""
    if not isinstance(value, str) or any(char.isspace() for char in value):
        return False
    parts = urlsplit(value)
    return parts.scheme.lower() == "https" and bool(parts.hostname)


def _check_topic(value: Any) -> None:
    """`source` entityUrl with an https `value`, or text with a `value` and an https `webUrl`."""
    topic = _object(value, "topic")
    _known_keys(topic, frozenset({"source", "value", "webUrl"}), "microsoft.graph.teamworkActivityTopic", "topic.")
    source = _required(topic, "source", "topic.")
    if source == "entityUrl":
        if not _is_https_url(_required(topic, "value", "topic.")):
            raise InvalidRequest("topic.value must be an https URL when topic.source is entityUrl.")
        if "webUrl" in topic and topic["webUrl"] is not None and not _is_https_url(topic["webUrl"]):
            raise InvalidRequest("topic.webUrl must be an https URL.")
    elif source == "text":
        text = _required(topic, "value", "topic.")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest("topic.value must be a non-empty string when topic.source is text.")
        if not _is_https_url(_required(topic, "webUrl", "topic.")):
            raise InvalidRequest("topic.webUrl must be an https URL when topic.source is text.")
    else:
        raise InvalidRequest(f"topic.source must be 'entityUrl' or 'text', not {source!r}.")


def _check_preview_text(value: Any) -> None:
    """An itemBody: `content` a string, `contentType` text or html."""
    preview = _object(value, "previewText")
    _known_keys(preview, frozenset({"content", "contentType"}), "microsoft.graph.itemBody", "previewText.")
    if not isinstance(_required(preview, "content", "previewText."), str):
        raise InvalidRequest("previewText.content must be a string.")
    if "contentType" in preview and preview["contentType"] not in ("text", "html"):
        raise InvalidRequest(f"previewText.contentType must be 'text' or 'html', not {preview['contentType']!r}.")


def _check_template_parameters(value: Any) -> None:
    """A list of keyValuePair objects; `name` and `value` are nullable strings in v1.0, so both may be absent."""
    if not isinstance(value, list):
        raise InvalidRequest("templateParameters must be a JSON array of {name, value} objects.")
    for index, item in enumerate(value):
        field = f"templateParameters[{index}]"
        pair = _object(item, field)
        _known_keys(pair, frozenset({"name", "value"}), KEY_VALUE_PAIR, f"{field}.")
        if "@odata.type" in pair and _odata_type(pair) != KEY_VALUE_PAIR:
            raise InvalidRequest(f"{field}.@odata.type must be {KEY_VALUE_PAIR}, not {pair['@odata.type']!r}.")
        for key in ("name", "value"):
            if pair.get(key) is not None and not isinstance(pair[key], str):
                raise InvalidRequest(f"{field}.{key} must be a string.")


def _check_bulk_recipients(value: Any) -> tuple[str, ...]:
    """1 to 100 aadUserNotificationRecipient objects; returns their user ids."""
    if not isinstance(value, list) or not value:
        raise InvalidRequest("recipients must be a non-empty JSON array of aadUserNotificationRecipient objects.")
    if len(value) > MAX_BULK_RECIPIENTS:
        raise InvalidRequest(
            f"recipients: at most {MAX_BULK_RECIPIENTS} recipients are allowed in one request, got {len(value)}."
        )
    return tuple(_check_recipient(item, "bulk", "", f"recipients[{index}]") for index, item in enumerate(value))


def _check_recipient(value: Any, kind: str, target: str, field: str) -> str:
    """One teamworkNotificationRecipient allowed on this endpoint; returns its user id, if it names a user."""
    recipient = _object(value, field)
    odata_type = _odata_type(recipient)
    allowed = _RECIPIENT_TYPES[kind]
    if odata_type not in allowed:
        names = ", ".join(allowed)
        raise InvalidRequest(f"{field}.@odata.type must be one of {names} on this endpoint, not {odata_type!r}.")
    keys = _RECIPIENT_KEYS[odata_type]
    _known_keys(recipient, frozenset(keys), odata_type, f"{field}.")
    values = {key: _required(recipient, key, f"{field}.") for key in keys}
    for key, item in values.items():
        if not isinstance(item, str) or not item:
            raise InvalidRequest(f"{field}.{key} must be a non-empty string.")
    if odata_type == AAD_USER:
        user_id: str = values["userId"]
        if not (_GUID.match(user_id) or _UPN.match(user_id)):
            raise InvalidRequest(f"{field}.userId must be a GUID or a user principal name, not {user_id!r}.")
        return user_id.lower()
    if odata_type == CHAT_MEMBERS and values["chatId"] != target:
        raise InvalidRequest(f"{field}.chatId must be the chat id in the URL ({target!r}).")
    if odata_type in (TEAM_MEMBERS, CHANNEL_MEMBERS) and values["teamId"].lower() != target.lower():
        raise InvalidRequest(f"{field}.teamId must be the team id in the URL ({target!r}).")
    if odata_type == CHANNEL_MEMBERS and not _CHANNEL.match(values["channelId"]):
        raise InvalidRequest(f"{field}.channelId must be a channel id such as 19:...@thread.tacv2.")
    return ""
