"""Random trouble, like Dev Proxy's plugins: latency, Graph's transient errors, and dropped connections."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

from starlette.requests import Request

from worker.simulator.config import SimulatorConfig

#: ASGI scope extension through which our uvicorn protocol lets the app abort the connection.
ABORT_EXTENSION = "teams_notify.simulator.abort"
#: How long a dropped request waits for the server to notice the connection is gone.
DROP_SETTLE_SECONDS = 1.0

#: Graph's error codes for the statuses a fault can return.
GRAPH_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_MESSAGES = {
    429: "Too many requests. Please retry after the time given in Retry-After.",
    500: "An internal server error occurred. The operation failed.",
    502: "The gateway received an invalid response from the upstream service.",
    503: "The service is temporarily unavailable. Please retry after the time given in Retry-After.",
    504: "The upstream service did not respond in time.",
}
#: Fault statuses that carry Retry-After, as Graph's do.
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """The dice for one request, thrown up front so a seed gives the same outcome for the n-th request."""

    drop: bool
    latency: float
    error_status: int | None


def fault_code_and_message(status: int) -> tuple[str, str]:
    """Graph's error code and a Graph-like message for a fault status."""
    if status in GRAPH_CODES:
        return GRAPH_CODES[status], _MESSAGES[status]
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return phrase.title().replace(" ", "").replace("-", ""), f"Simulated fault: {status} {phrase}."


class FaultInjector:
    """Draws faults from a seedable random source."""

    def __init__(self, seed: int | None) -> None:
        """A source seeded with `seed`, or from the system when None."""
        self._rng = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        """Restarts the sequence (reset, or a new seed through the control API)."""
        self._rng.seed(seed)

    def draw(self, config: SimulatorConfig) -> FaultDraw:
        """Always four numbers per request, whatever the config, so outcomes stay aligned with the seed."""
        rng = self._rng
        drop_roll, latency_roll, error_roll, status_roll = rng.random(), rng.random(), rng.random(), rng.random()
        latency_ms = config.latency_ms + (2 * latency_roll - 1) * config.latency_jitter_ms
        status = None
        if error_roll < config.error_rate:
            statuses = config.error_statuses
            status = statuses[min(int(status_roll * len(statuses)), len(statuses) - 1)]
        return FaultDraw(drop_roll < config.drop_rate, max(0.0, latency_ms) / 1000, status)


async def drop_connection(request: Request) -> None:
    """Aborts the TCP connection (no HTTP response at all) and waits until the server has noticed."""
    extension = cast(dict[str, object], request.scope.get("extensions", {})).get(ABORT_EXTENSION)
    if not isinstance(extension, dict):
        raise RuntimeError("dropping a connection needs the simulator's own uvicorn protocol")
    abort = cast(Callable[[], None], extension["abort"])
    abort()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DROP_SETTLE_SECONDS):
            while (await request.receive())["type"] != "http.disconnect":
                pass
