"""How a bulk job's recipients are stored in Redis: compact, one slice of at most 100 per Graph request.

A slice whose recipients are all plain `{"@odata.type": "microsoft.graph.aadUserNotificationRecipient",
"userId": ...}` is stored as their ids, one a line (about 37 bytes a recipient for a GUID, instead of
over 100 as JSON); the worker rebuilds each recipient exactly as the caller wrote it. Any other slice (an
`@odata.type` written with OData's leading `#`, say) is stored as the JSON list it was given. A JSON list
starts with `[`, which no user id can, so the two forms never mix up.
"""

from __future__ import annotations

import json
from typing import Any

#: The recipient type a compact slice stands for.
AAD_USER = "microsoft.graph.aadUserNotificationRecipient"


def encode(recipients: list[dict[str, Any]]) -> str:
    """One slice as stored: ids a line when every recipient is a plain aadUserNotificationRecipient."""
    if all(len(r) == 2 and r.get("@odata.type") == AAD_USER and "userId" in r for r in recipients):
        return "\n".join(r["userId"] for r in recipients)
    return json.dumps(recipients)


def encode_ids(user_ids: list[str]) -> str:
    """A slice of plain aadUserNotificationRecipients, from their ids."""
    return "\n".join(user_ids)


def decode(stored: str) -> list[dict[str, Any]]:
    """The recipients of a slice, as the caller wrote them."""
    if stored.startswith("["):
        return list(json.loads(stored))
    return [{"@odata.type": AAD_USER, "userId": user_id} for user_id in stored.split("\n")]
