"""The ASGI app (Entra, Graph and control routes on one port) and the uvicorn protocol that can drop connections."""

from __future__ import annotations

import asyncio
import json
from typing import cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from worker.simulator.control import control_routes
from worker.simulator.entra import entra_routes
from worker.simulator.faults import ABORT_EXTENSION
from worker.simulator.graph import graph_routes
from worker.simulator.state import SimulatorState


def build_app(state: SimulatorState) -> Starlette:
    """Control and Graph routes first (fixed prefixes), then Entra's `/{tenant}/...` routes."""

    async def route_error(request: Request, exc: Exception) -> Response:
        status, detail = (exc.status_code, exc.detail) if isinstance(exc, HTTPException) else (500, str(exc))
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, "BadRequest")
        body = {"error": {"code": code, "message": f"{detail}: {request.method} {request.url.path}"}}
        return Response(json.dumps(body), status_code=status, media_type="application/json")

    routes = [*control_routes(state), *graph_routes(state), *entra_routes(state)]
    return Starlette(routes=routes, exception_handlers={404: route_error, 405: route_error})


class DroppingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, handing the app a way to abort the TCP connection (for dropped-connection faults).

    ASGI gives an app no way to close a connection without an HTTP response, so each request's scope gets
    the `teams_notify.simulator.abort` extension: `{"abort": transport.abort}`.
    """

    #: Seconds an idle connection gets at shutdown to finish the TLS goodbye before it is aborted.
    SHUTDOWN_GRACE = 0.3

    # The override narrows BaseTransport to Transport exactly as uvicorn's own signature does.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wraps the app for this connection so its requests can reach the transport."""
        super().connection_made(transport)
        self._lost = False
        inner = cast(ASGIApp, self.app)
        extension = {"abort": transport.abort}

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[ABORT_EXTENSION] = extension
            await inner(scope, receive, send)

        self.app = app

    def connection_lost(self, exc: Exception | None) -> None:
        """Notes the loss, so a pending shutdown abort is skipped."""
        self._lost = True
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """As uvicorn, but an idle TLS connection whose client never answers the close is aborted.

        Otherwise an idle pooled client (MSAL's requests session) holds the server's graceful shutdown
        for its whole timeout, waiting for a TLS close_notify that never comes.
        """
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.loop.call_later(self.SHUTDOWN_GRACE, self._abort_if_open)

    def _abort_if_open(self) -> None:
        """Aborts the transport unless the connection already closed."""
        if not self._lost:
            self.transport.abort()
