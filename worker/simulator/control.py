"""The simulator's own API under /_simulator/: what was received, counters, reset and runtime config."""

from __future__ import annotations

import json
import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker.simulator.state import SimulatorState

ENDPOINT_KINDS = frozenset({"user", "chat", "team", "bulk"})


def _problem(message: str, status: int = 400) -> Response:
    """A control-API error: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status)


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    """A non-negative integer query parameter; ValueError naming it otherwise."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise ValueError(f"query parameter {name} must be a non-negative integer, not {text!r}")
    return int(text)


def control_routes(state: SimulatorState) -> list[BaseRoute]:
    """GET requests, stats, config, info; POST reset; PATCH config."""

    async def requests(request: Request) -> Response:
        endpoint = request.query_params.get("endpoint")
        if endpoint is not None and endpoint not in ENDPOINT_KINDS:
            return _problem(f"query parameter endpoint must be one of {sorted(ENDPOINT_KINDS)}, not {endpoint!r}")
        try:
            offset = _int_param(request, "offset", 0) or 0
            limit = _int_param(request, "limit", None)
        except ValueError as exc:
            return _problem(str(exc))
        body = state.recorder.records_json(endpoint=endpoint, offset=offset, limit=limit)
        return Response(body, media_type="application/json")

    async def stats(request: Request) -> Response:
        return JSONResponse(state.recorder.stats())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True, **state.recorder.stats()})

    async def get_config(request: Request) -> Response:
        return JSONResponse(state.config.public_dict())

    async def patch_config(request: Request) -> Response:
        try:
            changes = json.loads(await request.body())
        except ValueError:
            return _problem("the body must be a JSON object of config fields")
        if not isinstance(changes, dict):
            return _problem("the body must be a JSON object of config fields")
        try:
            config = state.reconfigure(changes)
        except (ValueError, TypeError) as exc:
            return _problem(str(exc))
        return JSONResponse(config.public_dict())

    async def info(request: Request) -> Response:
        host = request.headers.get("host") or request.url.netloc
        return JSONResponse(
            {
                "pid": os.getpid(),
                "graph_url": f"https://{host}/v1.0",
                "authority_host": f"https://{host}",
                "state_dir": str(state.config.resolved_state_dir),
            }
        )

    return [
        Route("/_simulator/requests", requests, methods=["GET"]),
        Route("/_simulator/stats", stats, methods=["GET"]),
        Route("/_simulator/reset", reset, methods=["POST"]),
        Route("/_simulator/config", get_config, methods=["GET"]),
        Route("/_simulator/config", patch_config, methods=["PATCH"]),
        Route("/_simulator/info", info, methods=["GET"]),
    ]
