"""The Graph client: a JSON body in, a typed result or a typed error out.

One pooled `httpx.Client` per worker process. Every request carries a fresh `client-request-id`; Graph's
`request-id` comes back on the result or the error, for the job record and the dead letter.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from worker import observe
from worker.errors import (
    Conflict,
    GraphError,
    PermanentGraphError,
    Throttled,
    TokenTooShortLived,
    TransientGraphError,
    Unauthorized,
)
from worker.retrying import parse_retry_after

log = logging.getLogger(__name__)

#: Seconds to connect, and to wait for Graph's answer.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
#: Statuses worth another attempt besides 429 and 503 (which carry Retry-After).
TRANSIENT_STATUSES = {408, 500, 502, 504}
USER_AGENT = "teams-notify/0.1"


@dataclass(frozen=True)
class GraphResult:
    """Graph accepted the request."""

    status: int
    request_id: str | None
    client_request_id: str


class GraphClient:
    """POSTs notification bodies to Graph and maps its answers to GraphResult or a GraphError."""

    def __init__(
        self, base_url: str, *, transport: httpx.BaseTransport | None = None, max_connections: int = 64
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
        )

    def post(self, path: str, body: dict[str, Any], token: str) -> GraphResult:
        """Sends one request; raises a TransientGraphError or PermanentGraphError subclass on failure."""
        client_request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Bearer {token}",
            "client-request-id": client_request_id,
            "return-client-request-id": "true",
        }
        endpoint = endpoint_of(path)
        started = time.perf_counter()
        try:
            response = self._client.post(path.lstrip("/"), json=body, headers=headers)
        except httpx.TransportError as exc:
            observe.GRAPH_RESPONSES.labels(endpoint, "error").inc()
            raise TransientGraphError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                client_request_id=client_request_id,
            ) from None
        observe.GRAPH_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        observe.GRAPH_RESPONSES.labels(endpoint, str(response.status_code)).inc()
        if response.is_success:
            return GraphResult(response.status_code, response.headers.get("request-id"), client_request_id)
        raise error_for(response, client_request_id)

    def close(self) -> None:
        """Closes the connection pool."""
        self._client.close()


def endpoint_of(path: str) -> str:
    """The metrics label of a Graph path: user, chat, team or bulk."""
    first = path.lstrip("/").split("/", 1)[0]
    return {"users": "user", "chats": "chat", "teams": "team"}.get(first, "bulk")


def _graph_error_body(response: httpx.Response) -> tuple[str | None, str, str | None]:
    """Graph's error code, message and request-id from its error body, tolerating anything else."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    inner = error.get("innerError") if isinstance(error.get("innerError"), dict) else {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    request_id = response.headers.get("request-id") or (inner or {}).get("request-id")
    return code, message or response.reason_phrase or f"HTTP {response.status_code}", request_id


def error_for(response: httpx.Response, client_request_id: str) -> GraphError:
    """The typed error for one of Graph's error answers."""
    status = response.status_code
    code, message, request_id = _graph_error_body(response)
    details: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "client_request_id": response.headers.get("client-request-id", client_request_id),
    }
    if status in (429, 503):
        return Throttled(message, retry_after=parse_retry_after(response.headers.get("Retry-After")), **details)
    if status in TRANSIENT_STATUSES:
        return TransientGraphError(message, **details)
    if status == 401:
        return Unauthorized(message, **details)
    if status == 409:
        return Conflict(message, **details)
    if status == 412:
        return TokenTooShortLived(message, **details)
    return PermanentGraphError(message, **details)
