"""The simulated Graph: the four activity-feed sends, checked in Graph's order, with throttling and faults."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from worker.simulator.config import BULK_MIN_TOKEN_SECONDS, SimulatorConfig
from worker.simulator.faults import RETRY_AFTER_STATUSES, drop_connection, fault_code_and_message
from worker.simulator.ratelimit import LimitKey, format_retry_after
from worker.simulator.recorder import Record
from worker.simulator.responses import GraphContext, graph_empty, graph_error
from worker.simulator.state import SimulatorState
from worker.simulator.tokens import TokenClaims, TokenError
from worker.simulator.validation import InvalidRequest, Notification, check_target, parse_json, validate_body

#: Graph refuses bodies larger than this (4 MB).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Success status per endpoint.
SUCCESS_STATUS = {"user": 204, "chat": 204, "team": 204, "bulk": 202}
CONFLICT_MESSAGE = (
    "Found multiple applications with the same AAD App ID '{app_id}' - "
    "a Teams Application ID is required to resolve which application is correct."
)

# Matched on the raw (still percent-encoded) path, so an encoded '/' inside an id cannot change the route.
_ROUTES = (
    ("user", re.compile(r"^/v1\.0/users/([^/]+)/teamwork/sendActivityNotification/?$", re.IGNORECASE)),
    ("chat", re.compile(r"^/v1\.0/chats/([^/]+)/sendActivityNotification/?$", re.IGNORECASE)),
    ("team", re.compile(r"^/v1\.0/teams/([^/]+)/sendActivityNotification/?$", re.IGNORECASE)),
    ("bulk", re.compile(r"^/v1\.0/teamwork/sendActivityNotificationToRecipients/?$", re.IGNORECASE)),
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Which send a request is: its kind, its decoded path and the decoded id in it (none for bulk)."""

    kind: str
    path: str
    target: str | None

    @classmethod
    def match(cls, raw_path: bytes) -> Endpoint | None:
        """The endpoint a raw request path names, or None."""
        text = raw_path.decode("latin-1")
        for kind, pattern in _ROUTES:
            found = pattern.match(text)
            if found:
                target = unquote(found.group(1), errors="strict") if found.groups() else None
                return cls(kind, unquote(text), target)
        return None


def graph_routes(state: SimulatorState) -> list[BaseRoute]:
    """Every path under /v1.0 goes to one handler, which routes on the raw path itself."""

    async def endpoint(request: Request) -> Response:
        context = GraphContext.of(request)
        response = await _handle(state, request, context)
        if response is None:  # dropped: nothing reaches the client, so nothing is counted as answered
            return Response(status_code=500)
        state.recorder.count_response(response.status_code)
        return response

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return [Route("/v1.0/{rest:path}", endpoint, methods=methods), Route("/v1.0", endpoint, methods=methods)]


async def _handle(state: SimulatorState, request: Request, context: GraphContext) -> Response | None:
    """One Graph call: drop, auth, body, 412, throttling, fault, 409, then accept and record (None: dropped)."""
    endpoint = _resolve(request, context)
    if isinstance(endpoint, Response):
        return endpoint
    raw = await request.body()
    config = state.config
    draw = state.faults.draw(config)
    if draw.latency > 0:
        await asyncio.sleep(draw.latency)
    if draw.drop:
        state.recorder.dropped += 1
        await drop_connection(request)
        return None
    try:
        claims = _authenticate(state, request)
    except TokenError as exc:
        challenge = 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'
        return graph_error(context, 401, "InvalidAuthenticationToken", str(exc), {"WWW-Authenticate": challenge})
    if len(raw) > MAX_BODY_BYTES:
        return graph_error(context, 413, "RequestEntityTooLarge", "The request body exceeds 4 MB.")
    try:
        check_target(endpoint.kind, endpoint.target)
        notification = validate_body(
            endpoint.kind, endpoint.target, parse_json(raw, request.headers.get("content-type"))
        )
    except InvalidRequest as exc:
        return graph_error(context, 400, "BadRequest", str(exc))
    return _after_validation(state, config, endpoint, claims, notification, context, raw, draw.error_status)


def _resolve(request: Request, context: GraphContext) -> Endpoint | Response:
    """The send a request names, or Graph's answer to an unknown path or a method other than POST."""
    try:
        endpoint = Endpoint.match(request.scope.get("raw_path") or request.url.path.encode())
    except UnicodeDecodeError:
        endpoint = None
    if endpoint is None:
        segment = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        return graph_error(context, 400, "BadRequest", f"Resource not found for the segment '{segment}'.")
    if request.method != "POST":
        message = f"The HTTP method '{request.method}' is not allowed on this resource; use POST."
        return graph_error(context, 405, "Request_BadRequest", message, {"Allow": "POST"})
    return endpoint


def _after_validation(
    state: SimulatorState,
    config: SimulatorConfig,
    endpoint: Endpoint,
    claims: TokenClaims,
    notification: Notification,
    context: GraphContext,
    raw: bytes,
    fault_status: int | None,
) -> Response:
    """The checks on a well-formed call, all synchronous so throttling decisions are atomic."""
    remaining = claims.expires_at - time.time()
    if endpoint.kind == "bulk" and remaining < BULK_MIN_TOKEN_SECONDS:
        message = (
            f"The access token must be valid for at least {BULK_MIN_TOKEN_SECONDS // 60} minutes to send "
            f"notifications in bulk; this one expires in {max(0, int(remaining))} seconds. Acquire a new token."
        )
        return graph_error(context, 412, "PreconditionFailed", message)
    throttle = state.limiter.acquire(_limit_keys(endpoint, claims, notification))
    if throttle is not None:
        retry_after = format_retry_after(throttle.retry_after, config.retry_after_decimal)
        return graph_error(context, 429, "TooManyRequests", throttle.message, {"Retry-After": retry_after})
    if fault_status is not None:
        code, message = fault_code_and_message(fault_status)
        extra = {"Retry-After": f"{config.fault_retry_after:g}"} if fault_status in RETRY_AFTER_STATUSES else None
        return graph_error(context, fault_status, code, message, extra)
    if not notification.teams_app_id and (
        claims.app_id.lower() in config.conflict_app_ids
        or any(user in config.conflict_user_ids for user in notification.users)
    ):
        return graph_error(context, 409, "Conflict", CONFLICT_MESSAGE.format(app_id=claims.app_id))
    status = SUCCESS_STATUS[endpoint.kind]
    state.recorder.accept(
        Record(
            endpoint=endpoint.kind,
            path=endpoint.path,
            target=endpoint.target,
            tenant_id=claims.tenant_id,
            app_id=claims.app_id,
            body=raw,
            request_id=context.request_id,
            client_request_id=context.client_request_id,
            status=status,
            received_at=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            recipients=notification.recipients,
        )
    )
    return graph_empty(context, status)


def _authenticate(state: SimulatorState, request: Request) -> TokenClaims:
    """The claims of the request's bearer token; TokenError with Graph's message otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header.strip():
        raise TokenError("Access token is empty.")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("Access token validation failure. The Authorization header is not a Bearer token.")
    return state.tokens.verify(token.strip())


def _limit_keys(endpoint: Endpoint, claims: TokenClaims, notification: Notification) -> list[tuple[str, LimitKey]]:
    """The windows a call counts in: per app per tenant, per app, per team or chat, per user."""
    app, tenant = claims.app_id.lower(), claims.tenant_id.lower()
    if endpoint.kind == "bulk":
        return [("bulk_tenant", (app, tenant)), ("bulk_app", (app,))]
    keys: list[tuple[str, LimitKey]] = [("single_tenant", (app, tenant)), ("single_app", (app,))]
    if endpoint.kind in ("team", "chat") and endpoint.target:
        keys.append(("team", (app, endpoint.kind, endpoint.target.lower())))
    keys.extend(("user_minute", (tenant, user)) for user in notification.users)
    return keys
