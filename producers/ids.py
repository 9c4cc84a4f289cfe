"""Checks of the ids that address Graph resources, and the one way they go into a URL path.

Graph would answer a malformed id with a 400 or, worse, a 404 on some other path; checking them before
enqueueing gives the caller the error while it can still act on it. Every id is percent-encoded whole, so
no id (`../`, `?`, `#`, `/`) can change which Graph endpoint a request reaches.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# A user principal name: local@domain, the domain made of DNS labels; nothing that could split a path.
_UPN = re.compile(
    r"^[A-Za-z0-9!#$&'*+=^_`{|}~.\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+$"
)
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+$")
# Teams thread ids: group chats and meetings (`@thread.v2`, older `@thread.skype`), channels
# (`@thread.tacv2`, `@thread.skype`), one-on-one chats (`19:{guid}_{guid}@unq.gbl.spaces`).
_CHAT = re.compile(r"^19:[A-Za-z0-9_.\-]+@(?:thread\.(?:v2|skype|tacv2)|unq\.gbl\.spaces)$")
_CHANNEL = re.compile(r"^19:[A-Za-z0-9_.\-]+@thread\.(?:tacv2|skype)$")


def is_guid(value: str) -> bool:
    """True for a GUID in its usual 8-4-4-4-12 hex form."""
    return bool(_GUID.match(value))


def is_user_id(value: str) -> bool:
    """True for a user's GUID or user principal name (the fast path of `check_user_id`)."""
    return bool(_GUID.match(value) or _UPN.match(value))


def check_user_id(value: str) -> str:
    """A user is named by its Entra object id (GUID) or its user principal name."""
    if not (_GUID.match(value) or _UPN.match(value)):
        raise ValueError(f"{value!r} is neither a GUID nor a user principal name")
    return value


def check_team_id(value: str) -> str:
    """A team is named by the GUID of its Microsoft 365 group."""
    if not _GUID.match(value):
        raise ValueError(f"{value!r} is not a team id (a GUID)")
    return value


def check_chat_id(value: str) -> str:
    """A chat id is a Teams thread id such as `19:…@thread.v2` or `19:…@unq.gbl.spaces`."""
    if not _CHAT.match(value):
        raise ValueError(f"{value!r} is not a chat id (19:…@thread.v2, 19:…@unq.gbl.spaces)")
    return value


def check_channel_id(value: str) -> str:
    """A channel id is a Teams thread id such as `19:…@thread.tacv2`."""
    if not _CHANNEL.match(value):
        raise ValueError(f"{value!r} is not a channel id (19:…@thread.tacv2)")
    return value


def check_tenant_id(value: str) -> str:
    """A tenant is named by its GUID or one of its verified domains."""
    if value.lower() in {"common", "organizations", "consumers"} or not (_GUID.match(value) or _DOMAIN.match(value)):
        raise ValueError(f"{value!r} is not a tenant id (a GUID or a domain such as contoso.onmicrosoft.com)")
    return value


def path_segment(value: str) -> str:
    """Percent-encodes an id whole, `/` included, so it stays one path segment (never `.` or `..`)."""
    if value in ("", ".", ".."):
        raise ValueError(f"{value!r} cannot be a path segment")
    return quote(value, safe="")
