"""Graph's Teams throttling as sliding windows: a request passes only if every window it counts in has room."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: What each limit name counts, for 429 messages.
LIMIT_SCOPES: Mapping[str, str] = {
    "bulk_tenant": "bulk sends per app per tenant",
    "bulk_app": "bulk sends per app across tenants",
    "single_tenant": "user, chat and team sends per app per tenant",
    "single_app": "user, chat and team sends per app across tenants",
    "team": "sends per app to one team or chat",
    "user_minute": "notifications to one user",
}
#: Limits counted per minute; the others are per second.
PER_MINUTE = frozenset({"user_minute"})
#: How many acquisitions pass between sweeps of idle windows (keeps memory flat with many users).
SWEEP_EVERY = 4096

LimitKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Window:
    """At most `count` requests in any `seconds`-long span; a rate of r/s becomes floor(r) per floor(r)/r s."""

    name: str
    count: int
    seconds: float

    @classmethod
    def for_rate(cls, name: str, rate: float) -> Window:
        """The window for a published rate (per second, or per minute for `user_minute`)."""
        period = 60.0 if name in PER_MINUTE else 1.0
        count = max(1, math.floor(rate))
        return cls(name, count, period * count / rate)

    def describe(self) -> str:
        """Human wording for error messages, e.g. `5 requests per 1 s`."""
        return f"{self.count} per {self.seconds:g} s"


@dataclass(frozen=True, slots=True)
class Throttle:
    """A refusal: which limit was hit and how long until the request would pass."""

    limit: str
    window: Window
    retry_after: float

    @property
    def message(self) -> str:
        """Graph-like 429 text naming the exhausted limit."""
        return (
            f"Too many requests: the limit on {LIMIT_SCOPES.get(self.limit, self.limit)} "
            f"({self.window.describe()}) is exhausted. Please retry after the time given in Retry-After."
        )


def format_retry_after(seconds: float, decimal: bool) -> str:
    """Retry-After rounded up: hundredths of a second when decimal, else whole seconds (at least 1)."""
    if decimal:
        value = max(0.01, math.ceil(seconds * 100 - 1e-9) / 100)
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(max(1, math.ceil(seconds - 1e-9)))


class RateLimiter:
    """Sliding-window logs keyed by limit name and scope (app, tenant, team, user)."""

    def __init__(self, limits: Mapping[str, float]) -> None:
        """One window per enforced limit; names absent from `limits` are not enforced."""
        self._windows = {name: Window.for_rate(name, rate) for name, rate in limits.items() if rate > 0}
        self._hits: dict[LimitKey, deque[float]] = {}
        self._since_sweep = 0

    def acquire(self, keys: Iterable[tuple[str, LimitKey]], now: float | None = None) -> Throttle | None:
        """Counts a request in every window it belongs to, or none of them and returns the refusal."""
        now = time.monotonic() if now is None else now
        chosen: list[tuple[Window, deque[float]]] = []
        worst: Throttle | None = None
        for name, scope in keys:
            window = self._windows.get(name)
            if window is None:
                continue
            hits = self._hits.setdefault((name, *scope), deque())
            horizon = now - window.seconds
            while hits and hits[0] <= horizon:
                hits.popleft()
            if len(hits) >= window.count:
                wait = hits[len(hits) - window.count] + window.seconds - now
                if worst is None or wait > worst.retry_after:
                    worst = Throttle(name, window, wait)
            chosen.append((window, hits))
        if worst is not None:
            return worst
        for _, hits in chosen:
            hits.append(now)
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._sweep(now)
        return None

    def _sweep(self, now: float) -> None:
        """Forgets windows with no hit still inside them."""
        self._since_sweep = 0
        idle = [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self._windows[key[0]].seconds]
        for key in idle:
            del self._hits[key]

    def reset(self) -> None:
        """Forgets every hit (the control endpoint's reset)."""
        self._hits.clear()
        self._since_sweep = 0
