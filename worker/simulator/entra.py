"""The simulated Entra ID: tenant discovery and client-credential tokens, as MSAL expects them.

Secrets and certificate assertions are checked for real (`worker.simulator.assertions`); a tenant's tokens
may live a chosen time (`token_lifetimes`), and its token endpoint may hang (`hung_token_tenants`: the
connection is held, unanswered, until the tenant is taken off that list or the client gives up) or answer
as an overwhelmed or failing Entra does (`token_fault_status`: 429 with Retry-After, or 5xx).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker.simulator.assertions import AssertionRefused, verify
from worker.simulator.state import SimulatorState
from worker.simulator.tokens import audience_for

#: The one grant this simulator supports: an app calling Graph as itself.
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Tenants that name no tenant, which Entra refuses for client credentials.
MULTI_TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})
#: The longest a hung token endpoint holds a connection.
HANG_LIMIT = 600.0

#: Where an assertion's `aud` may point: the tenant's v2 or v1 token endpoint, as the client reached it.
_ASSERTION_AUDIENCE_PATHS = ("oauth2/v2.0/token", "oauth2/token")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


class EntraError(Exception):
    """An Entra refusal: HTTP status, OAuth error, AADSTS code and its text."""

    def __init__(self, status: int, error: str, code: int, text: str) -> None:
        """Keeps the parts of Entra's error body."""
        super().__init__(f"AADSTS{code}: {text}")
        self.status, self.error, self.code, self.text = status, error, code, text


def tenant_guid(tenant: str) -> str:
    """The tenant's GUID: itself, or a stable GUID derived from a domain name (Entra resolves domains)."""
    return tenant.lower() if _GUID.match(tenant) else str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant.lower()))


def _check_tenant(tenant: str) -> None:
    """A tenant is a GUID, a domain name or one of the multi-tenant aliases."""
    if not (tenant.lower() in MULTI_TENANT_ALIASES or _GUID.match(tenant) or _DOMAIN.match(tenant)):
        raise EntraError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
            "into the correct cloud.",
        )


def _base_url(request: Request) -> str:
    """The authority host as the client reached it, so discovery works under any host name."""
    return f"https://{request.headers.get('host') or request.url.netloc}"


def entra_routes(state: SimulatorState) -> list[BaseRoute]:
    """Discovery, token and (empty) keys endpoints under `/{tenant}/`."""

    async def openid_configuration(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        try:
            _check_tenant(tenant)
        except EntraError as exc:
            return _error_response(request, exc)
        tid = "{tenantid}" if tenant.lower() in MULTI_TENANT_ALIASES else tenant_guid(tenant)
        base = f"{_base_url(request)}/{tid}"
        return JSONResponse(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            }
        )

    async def token(request: Request) -> Response:
        raw = await request.body()  # read first: waiting for a disconnect must not swallow the body
        if not await _hang_if_asked(state, request):
            return Response(status_code=504)  # the client gave up on a hung endpoint: nothing reaches it
        fault = state.config.token_fault_status
        if fault is not None:
            state.recorder.token_errors += 1
            return _fault_response(request, fault)
        try:
            access_token, lifetime = _issue(state, request, raw)
        except EntraError as exc:
            state.recorder.token_errors += 1
            return _error_response(request, exc)
        state.recorder.tokens_issued += 1
        state.recorder.tokens_by_tenant[tenant_guid(request.path_params["tenant"])] += 1
        body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime}
        return JSONResponse({**body, "access_token": access_token}, headers=_entra_headers(request))

    async def keys(request: Request) -> Response:
        return JSONResponse({"keys": []})  # tokens are HMAC-signed: nothing for a client to verify with

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/{tenant}/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
    ]


async def _hang_if_asked(state: SimulatorState, request: Request) -> bool:
    """Holds the request, unanswered, while its tenant's token endpoint is to hang; False if the client left."""
    tenant = request.path_params["tenant"]

    def hung() -> bool:
        names = state.config.hung_token_tenants
        return bool(names) and ("*" in names or tenant.lower() in names or tenant_guid(tenant) in names)

    if not hung():
        return True
    state.recorder.token_requests_held += 1
    deadline = time.monotonic() + HANG_LIMIT
    while hung() and time.monotonic() < deadline:
        if await request.is_disconnected():
            return False
        await asyncio.sleep(0.05)
    return not await request.is_disconnected()


def _issue(state: SimulatorState, request: Request, raw: bytes) -> tuple[str, int]:
    """Checks a client-credentials request as Entra does and returns a token and its lifetime."""
    tenant = request.path_params["tenant"]
    _check_tenant(tenant)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    is_form = content_type == "application/x-www-form-urlencoded"
    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True) if is_form else {}
    field = {name: values[0] for name, values in form.items()}
    grant_type = _param(field, "grant_type")
    if grant_type != CLIENT_CREDENTIALS:
        message = f"The app requested an unsupported grant type '{grant_type}'."
        raise EntraError(400, "unsupported_grant_type", 70003, message)
    if tenant.lower() in MULTI_TENANT_ALIASES:
        raise EntraError(
            400,
            "invalid_request",
            50059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        )
    client_id = _param(field, "client_id")
    base = _base_url(request).lower()
    audiences = {
        f"{base}/{name}/{path}" for name in (tenant.lower(), tenant_guid(tenant)) for path in _ASSERTION_AUDIENCE_PATHS
    }
    _check_credential(state, client_id, field, tenant, audiences)
    scope = _param(field, "scope")
    scopes = scope.split()
    if len(scopes) != 1:
        message = f"The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid."
        raise EntraError(400, "invalid_scope", 70011, message)
    if not scopes[0].endswith("/.default"):
        raise EntraError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scopes[0]} is not valid. Client credential flows must have a scope value "
            "with /.default suffixed to the resource identifier (application ID URI).",
        )
    lifetime = state.config.lifetime_for(tenant, tenant_guid(tenant))
    access_token, _ = state.tokens.issue(
        tenant_id=tenant_guid(tenant),
        app_id=client_id,
        audience=audience_for(scopes[0].removesuffix("/.default")),
        lifetime=lifetime,
    )
    return access_token, lifetime


def _param(field: dict[str, str], name: str) -> str:
    """A required form parameter, or Entra's AADSTS900144."""
    value = field.get(name, "").strip()
    if not value:
        message = f"The request body must contain the following parameter: '{name}'."
        raise EntraError(400, "invalid_request", 900144, message)
    return value


def _check_credential(
    state: SimulatorState, client_id: str, field: dict[str, str], tenant: str, audiences: set[str]
) -> None:
    """A known client (when clients are configured) with its secret or a verified certificate assertion.

    With no client configured, any client is accepted with a secret, or with an assertion that verifies
    against the certificate it carries.
    """
    config = state.config
    known = set(config.clients) | set(config.client_certificates)
    if known and client_id.lower() not in known:
        raise EntraError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
            "if the application has not been installed by the administrator of the tenant.",
        )
    secret = field.get("client_secret", "")
    if secret:
        if known and secret != config.clients.get(client_id.lower()):
            raise EntraError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        return
    assertion = field.get("client_assertion", "")
    if not assertion and not field.get("client_assertion_type"):
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    if field.get("client_assertion_type") != JWT_BEARER or assertion.count(".") != 2:
        raise EntraError(401, "invalid_client", 50027, "JWT token is invalid or malformed.")
    registered = config.client_certificates.get(client_id.lower(), ()) if known else None
    try:
        verify(assertion, client_id=client_id, registered=registered, audiences=audiences, now=time.time())
    except AssertionRefused as exc:
        raise EntraError(401, "invalid_client", exc.code, exc.text) from None


def _entra_headers(request: Request) -> dict[str, str]:
    """Entra's caching and correlation headers."""
    headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "x-ms-request-id": str(uuid.uuid4())}
    client_request_id = request.headers.get("client-request-id")
    if client_request_id:
        headers["client-request-id"] = client_request_id
    return headers


def _fault_response(request: Request, status: int) -> Response:
    """Entra overwhelmed (429, with Retry-After) or down (5xx): `temporarily_unavailable` or `server_error`."""
    if status == 429:
        text = "The request was throttled: too many requests. Retry after the time in Retry-After."
        response = _error_response(request, EntraError(429, "temporarily_unavailable", 90055, text))
        response.headers["Retry-After"] = "1"
        return response
    return _error_response(
        request, EntraError(status, "server_error", 90033, "A transient error has occurred. Please try again.")
    )


def _error_response(request: Request, exc: EntraError) -> Response:
    """Entra's error body: error, error_description with trace and correlation ids, codes, timestamp."""
    headers = _entra_headers(request)
    trace_id = headers["x-ms-request-id"]
    correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = f"{exc} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
    body = {
        "error": exc.error,
        "error_description": description,
        "error_codes": [exc.code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{_base_url(request)}/error?code={exc.code}",
    }
    return JSONResponse(body, status_code=exc.status, headers=headers)
