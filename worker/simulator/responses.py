"""Graph's response envelope: request-id headers on every answer and its exact error body."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True, slots=True)
class GraphContext:
    """The ids of one Graph call: a fresh request-id, and the caller's client-request-id (or a fresh one)."""

    request_id: str
    client_request_id: str

    @classmethod
    def of(cls, request: Request) -> GraphContext:
        """Ids for this request, echoing its `client-request-id` header when it has one."""
        request_id = str(uuid.uuid4())
        return cls(request_id, request.headers.get("client-request-id") or str(uuid.uuid4()))

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The headers every Graph response carries (uvicorn adds `Date`)."""
        headers = {"request-id": self.request_id, "client-request-id": self.client_request_id}
        if extra:
            headers.update(extra)
        return headers


def utc_now_iso() -> str:
    """Now, as Graph writes dates in `innerError`: ISO 8601, seconds, no offset."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def graph_error(
    context: GraphContext, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """`{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": utc_now_iso(),
                "request-id": context.request_id,
                "client-request-id": context.client_request_id,
            },
        }
    }
    return Response(
        json.dumps(body).encode(), status_code=status, headers=context.headers(headers), media_type="application/json"
    )


def graph_empty(context: GraphContext, status: int) -> Response:
    """A success without a body: 204 for user, chat and team sends, 202 for bulk."""
    return Response(b"" if status != 204 else None, status_code=status, headers=context.headers())
