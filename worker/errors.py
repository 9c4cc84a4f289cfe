"""The worker's part of the exception tree (the root and the producers' errors are in `producers.errors`).

    TeamsNotifyError
    ├── ConfigurationError: a setting is missing or malformed (names the variable)
    ├── AuthError: Entra refused or could not be reached for a token
    └── GraphError: Graph answered with an error, or did not answer (status, code, request-id)
        ├── TransientGraphError: worth retrying (429, 5xx, timeouts, dropped connections)
        │   ├── Throttled: 429 or 503, carrying Retry-After when Graph sent one
        │   └── Unauthorized: 401, the token was refused; retried once with a fresh one
        └── PermanentGraphError: retrying cannot help; dead-lettered for a person
            ├── Conflict: 409, several Teams apps share the Entra app id
            └── TokenTooShortLived: 412 on a bulk send, the token had under 45 minutes left

Retry decisions are made by type: the retry policy retries TransientGraphError and nothing else.
"""

from __future__ import annotations

from producers.errors import ConfigurationError, TeamsNotifyError

__all__ = [
    "AuthError",
    "ConfigurationError",
    "Conflict",
    "GraphError",
    "PermanentGraphError",
    "TeamsNotifyError",
    "Throttled",
    "TokenTooShortLived",
    "TransientGraphError",
    "Unauthorized",
]


class AuthError(TeamsNotifyError):
    """Entra refused the credentials or could not be reached; the message carries Entra's error code."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class GraphError(TeamsNotifyError):
    """An error answer from Graph (or none at all), with what Graph said about it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.graph_message = message
        self.request_id = request_id
        self.client_request_id = client_request_id

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        code = f" {self.code}" if self.code else ""
        return f"{status}{code}: {self.graph_message}"


class TransientGraphError(GraphError):
    """Graph may well accept the same request later."""


class Throttled(TransientGraphError):
    """429 Too Many Requests or 503 Service Unavailable; never retry before `retry_after` seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id, client_request_id=client_request_id)
        self.retry_after = retry_after


class Unauthorized(TransientGraphError):
    """401: Graph refused the access token; a fresh token may be accepted."""


class PermanentGraphError(GraphError):
    """Graph refused the request for a reason that retrying cannot change."""


class Conflict(PermanentGraphError):
    """409: several Teams apps share this Entra app id; a person must uninstall one or set teamsAppId."""


class TokenTooShortLived(PermanentGraphError):
    """412 on a bulk send: the access token had less than 45 minutes left."""
