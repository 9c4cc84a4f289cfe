"""The worker's part of the exception tree (the root and the producers' errors are in `producers.errors`).

    TeamsNotifyError
    ├── ConfigurationError: a setting is missing or malformed (names the variable)
    ├── AuthError: no token for a tenant (`transient`: the request waits; else it is dead-lettered, as `reason`)
    │   ├── EntraUnavailable: Entra timed out, was unreachable or answered 429/5xx (transient)
    │   ├── CredentialsRefused: Entra refused the app's secret or certificate (AADSTS7000215, 700027, ...):
    │   │                       transient, so requests wait for a person to fix the credential; nothing is lost
    │   ├── TenantNotFound: Entra knows no such tenant (AADSTS90002): permanent, `unknown_tenant`
    │   └── TokenLifetimeTooShort: the tenant's tokens live under 45 minutes, too short for a bulk send (412):
    │                              permanent, `token_lifetime_too_short`
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
    "CredentialsRefused",
    "EntraUnavailable",
    "GraphError",
    "PermanentGraphError",
    "TeamsNotifyError",
    "TenantNotFound",
    "Throttled",
    "TokenLifetimeTooShort",
    "TokenTooShortLived",
    "TransientGraphError",
    "Unauthorized",
]


class AuthError(TeamsNotifyError):
    """No token: Entra refused or could not be reached; the message carries Entra's error code, never a secret.

    `transient` says whether waiting may help (the request is deferred) or not (it is dead-lettered, its
    dead letter's reason being `reason` when set). `code` is Entra's AADSTS number when it gave one.
    """

    #: The dead-letter reason of a permanent error of this kind (None: the generic `auth`).
    default_reason: str | None = None
    #: Whether an error of this kind is worth waiting for, unless told otherwise.
    default_transient = False

    def __init__(
        self, message: str, *, transient: bool | None = None, reason: str | None = None, code: int | None = None
    ) -> None:
        super().__init__(message)
        self.transient = self.default_transient if transient is None else transient
        self.reason = reason or self.default_reason
        self.code = code


class EntraUnavailable(AuthError):
    """Entra did not answer in time, could not be reached, or answered 429 or 5xx: ask again later."""

    default_reason = "entra_unavailable"
    default_transient = True


class CredentialsRefused(AuthError):
    """Entra refused the app's credential (wrong or expired secret, unregistered certificate, app not in tenant).

    Transient on purpose: the requests wait (nothing is dead-lettered) until a person fixes the credential.
    """

    default_reason = "credentials_refused"
    default_transient = True


class TenantNotFound(AuthError):
    """Entra knows no such tenant: retrying cannot help the job that names it."""

    default_reason = "unknown_tenant"


class TokenLifetimeTooShort(AuthError):
    """The tenant's tokens live under 45 minutes (a token-lifetime policy): Graph refuses bulk sends with them."""

    default_reason = "token_lifetime_too_short"


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
