"""Entra through MSAL: one confidential client per tenant, every HTTP call bounded by a timeout, errors typed.

MSAL stays the client (its `acquire_token_for_client`, its signed assertions for a certificate) but keeps no
token: the fleet's shared cache (`worker.tokencache`) is the cache, so every `fetch` asks Entra, and the
caller decides when that is needed. Entra's answers become the `AuthError` family (`worker.errors`).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import msal
import requests

from worker.credentials import ClientCredential
from worker.errors import AuthError, CredentialsRefused, EntraUnavailable, TenantNotFound

log = logging.getLogger(__name__)

#: Seconds to connect to Entra and to wait for each answer (discovery and token requests alike).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
#: OAuth errors meaning Entra refuses the app's credential (AADSTS7000215 wrong secret, 7000222 expired
#: secret, 700027 unregistered certificate or bad signature, 700024 expired assertion, 700016 app not in the
#: tenant, ...): a person must fix it, and the requests wait for them.
CREDENTIAL_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
#: AADSTS codes of a tenant Entra does not know.
UNKNOWN_TENANT_CODES = frozenset({90002})
#: OAuth errors that retrying the same request cannot fix.
PERMANENT_ERRORS = frozenset({"invalid_request", "unsupported_grant_type", "invalid_tenant"})

_TRACE = re.compile(r"\s*(Trace ID|Correlation ID|Timestamp):.*$", re.DOTALL)


class _NoTokenCache(msal.TokenCache):  # type: ignore[misc]  # msal ships no type information
    """MSAL's token cache, kept empty: every acquire goes to Entra, the shared cache keeps the tokens."""

    def add(self, event: Any, now: Any = None) -> None:
        """Keeps nothing."""


class EntraClient:
    """Client-credential tokens for Graph from Entra, through one MSAL app per tenant."""

    def __init__(
        self,
        credential: ClientCredential,
        authority_host: str,
        scope: str,
        *,
        instance_discovery: bool = True,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    ) -> None:
        self._credential = credential
        self._authority_host = authority_host
        self._scope = scope
        self._instance_discovery = instance_discovery
        self._timeout = timeout
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._lock = threading.Lock()  # guards `_apps` only; never held across a network call

    def __repr__(self) -> str:
        return f"EntraClient(authority_host={self._authority_host!r}, credential={self._credential.describe()!r})"

    def fetch(self, tenant: str) -> tuple[str, float]:
        """A new token for the tenant and its lifetime in seconds, straight from Entra.

        Raises:
            CredentialsRefused: Entra refuses the app's secret or certificate (transient: a person fixes it).
            TenantNotFound: Entra knows no such tenant.
            EntraUnavailable: Entra timed out, could not be reached, or answered 429 or 5xx.
            AuthError: any other refusal (permanent).
        """
        app = self._app(tenant)
        try:
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[self._scope])
        except requests.Timeout:
            raise EntraUnavailable(
                f"Entra did not answer a token request for tenant {tenant} within {self._timeout[1]:g}s"
            ) from None
        except (requests.RequestException, msal.exceptions.MsalError, ValueError, RuntimeError) as exc:
            raise EntraUnavailable(f"cannot get a token from Entra for tenant {tenant}: {type(exc).__name__}") from None
        if "access_token" not in result:
            raise self._refusal(tenant, result)
        return str(result["access_token"]), float(result.get("expires_in", 0))

    def _app(self, tenant: str) -> msal.ConfidentialClientApplication:
        """The tenant's MSAL app; made (reading the tenant's OIDC metadata) without holding any lock."""
        with self._lock:
            app = self._apps.get(tenant)
        if app is not None:
            return app
        try:
            app = msal.ConfidentialClientApplication(
                self._credential.client_id,
                client_credential=self._credential.msal_credential(),
                authority=f"{self._authority_host}/{tenant}",
                # A simulator's (or any custom) host must not trigger a call to Microsoft's discovery.
                instance_discovery=self._instance_discovery,
                token_cache=_NoTokenCache(),
                timeout=self._timeout,
            )
        except requests.Timeout:
            raise EntraUnavailable(
                f"Entra did not answer the metadata request for tenant {tenant} within {self._timeout[1]:g}s"
            ) from None
        except requests.RequestException as exc:
            raise EntraUnavailable(f"cannot reach Entra for tenant {tenant}: {type(exc).__name__}") from None
        except ValueError as exc:
            # MSAL hides the answer of its discovery request; a 400 there is Entra's "no such tenant".
            if "HTTP status: 400" in str(exc.__context__ or ""):
                raise TenantNotFound(f"Entra knows no tenant {tenant!r} (AADSTS90002)", code=90002) from None
            raise EntraUnavailable(f"cannot read Entra's metadata for tenant {tenant}: {type(exc).__name__}") from None
        with self._lock:
            return self._apps.setdefault(tenant, app)

    def _refusal(self, tenant: str, result: dict[str, Any]) -> AuthError:
        """Entra's error answer as the error the delivery core acts on; never a secret in it."""
        error = str(result.get("error") or "unknown_error")
        codes = result.get("error_codes") or []
        code = int(codes[0]) if codes and str(codes[0]).isdigit() else None
        lines = str(result.get("error_description") or "").strip().splitlines()
        description = _TRACE.sub("", lines[0]).strip() if lines else error
        if error in CREDENTIAL_ERRORS:
            what = self._credential.describe()
            message = f"Entra refuses the {what} of app {self._credential.client_id} for tenant {tenant}: {description}"
            return CredentialsRefused(message, code=code)
        if code in UNKNOWN_TENANT_CODES:
            return TenantNotFound(f"Entra knows no tenant {tenant!r}: {description}", code=code)
        message = f"Entra refused a token for tenant {tenant}: {error}: {description}"
        if error in PERMANENT_ERRORS:
            return AuthError(message, transient=False, code=code)
        if error == "invalid_scope":  # the fleet's cloud setting, not the job: fixed and restarted, nothing lost
            return AuthError(message, transient=True, reason="invalid_scope", code=code)
        return EntraUnavailable(message, code=code)  # temporarily_unavailable, server_error, 429, ...
