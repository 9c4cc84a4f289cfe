"""Access tokens for Graph through MSAL's client-credentials flow, one MSAL app per tenant.

MSAL caches tokens and renews them five minutes before expiry; a bulk send needs more than that (Graph
refuses it with 412 when the token has under 45 minutes left), so `token(min_lifetime=...)` drops a cached
token that is too close to its end and asks Entra for a fresh one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msal
import requests

from worker.config import Settings
from worker.errors import AuthError

log = logging.getLogger(__name__)

#: Entra error codes that retrying cannot fix (bad secret, unknown app or tenant, no consent).
PERMANENT_ENTRA_ERRORS = {"invalid_client", "unauthorized_client", "invalid_request", "invalid_scope"}


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it expires (epoch seconds); the token itself never appears in a repr."""

    value: str = field(repr=False)
    expires_at: float

    @property
    def lifetime(self) -> float:
        """Seconds left before it expires."""
        return self.expires_at - time.time()


class TokenProvider:
    """Client-credential tokens for Graph, per tenant, cached by MSAL."""

    def __init__(self, settings: Settings) -> None:
        self._client_id, self._secret = settings.require_credentials()
        self._settings = settings
        self._scopes = [settings.graph_scope]
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self._client_id!r}, authority_host={self._settings.authority_host!r})"

    def token(self, tenant_id: str, min_lifetime: float = 0, required: float | None = None) -> AccessToken:
        """A token with `min_lifetime` seconds left, else a fresh one, which must have `required` left at least.

        Raises:
            AuthError: Entra refused, or its fresh token is shorter-lived than `required` (default min_lifetime).
        """
        app = self._app(tenant_id)
        token = self._acquire(app, tenant_id)
        if token.lifetime < min_lifetime:
            self._forget(app)
            token = self._acquire(app, tenant_id)
            if token.lifetime < (min_lifetime if required is None else required):
                raise AuthError(
                    f"Entra issued a token for tenant {tenant_id} with {token.lifetime / 60:.0f} minutes left; "
                    f"this send needs {(min_lifetime if required is None else required) / 60:.0f}"
                )
        return token

    def invalidate(self, tenant_id: str) -> None:
        """Drops the tenant's cached token, after Graph refused it."""
        self._forget(self._app(tenant_id))

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        with self._lock:
            app = self._apps.get(tenant_id)
            if app is None:
                try:
                    app = msal.ConfidentialClientApplication(
                        self._client_id,
                        client_credential=self._secret,
                        authority=f"{self._settings.authority_host}/{tenant_id}",
                        # A simulator's (or any custom) host must not trigger a call to Microsoft's discovery.
                        instance_discovery=not self._settings.custom_authority,
                        token_cache=msal.TokenCache(),
                    )
                except (requests.RequestException, ValueError) as exc:
                    # MSAL reads the authority's OIDC metadata when the app is made: Entra may be down.
                    reason = f"cannot reach Entra for tenant {tenant_id}: {type(exc).__name__}"
                    raise AuthError(reason, transient=True) from None
                self._apps[tenant_id] = app
            return app

    def _acquire(self, app: msal.ConfidentialClientApplication, tenant_id: str) -> AccessToken:
        try:
            result: dict[str, Any] = app.acquire_token_for_client(scopes=self._scopes)
        except (requests.RequestException, ValueError) as exc:
            raise AuthError(
                f"cannot reach Entra for tenant {tenant_id}: {type(exc).__name__}", transient=True
            ) from None
        if "access_token" not in result:
            error = str(result.get("error", "unknown_error"))
            description = (
                str(result.get("error_description", "")).splitlines()[0] if result.get("error_description") else ""
            )
            raise AuthError(
                f"Entra refused a token for tenant {tenant_id}: {error}: {description}",
                transient=error not in PERMANENT_ENTRA_ERRORS,
            )
        return AccessToken(result["access_token"], time.time() + float(result.get("expires_in", 0)))

    def _forget(self, app: msal.ConfidentialClientApplication) -> None:
        cache = app.token_cache
        for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(entry)
