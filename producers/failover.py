"""How a client through Sentinels rides out a failover of its master.

Each command is retried with jittered backoff, for up to `FAILOVER_WINDOW` seconds, on a connection error, a
timeout or a demoted master (READONLY), the master looked up again each time (`FailoverRetry`); and the
Sentinels are asked where the master is at least every `MASTER_CHECK_EVERY` seconds, so that a master they
have replaced is left at once (`WatchedSentinelPool`). Lua scripts are reloaded by redis-py when the new
master does not know them (NOSCRIPT), and every script of the fleet is safe to run again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

#: Seconds a command through Sentinels keeps retrying while the master is away (a failover takes a few).
FAILOVER_WINDOW = 30.0
#: Most attempts of one command in that window; the backoff between two grows from 50 ms to 1 s, jittered.
FAILOVER_ATTEMPTS = 60
FAILOVER_BACKOFF = (0.05, 1.0)
#: How often a client through Sentinels asks them where the master is, besides when it connects.
MASTER_CHECK_EVERY = 1.0

T = TypeVar("T")


class FailoverRetry(Retry):
    """redis-py's Retry, bounded in time as well as in attempts: a failover is ridden out, a lost Redis is not
    waited for forever."""

    def __init__(
        self,
        window: float = FAILOVER_WINDOW,
        attempts: int = FAILOVER_ATTEMPTS,
        backoff: tuple[float, float] = FAILOVER_BACKOFF,
    ) -> None:
        base, cap = backoff
        super().__init__(EqualJitterBackoff(cap=cap, base=base), attempts)
        self.window = window

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Calls `do` until it succeeds, a non-retryable error, the attempts or the window run out."""
        deadline = time.monotonic() + self.window
        self._backoff.reset()  # type: ignore[no-untyped-call]  # untyped in redis-py
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                pause = self._backoff.compute(failures)
                if failures > self._retries or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)


class WatchedSentinelPool(SentinelConnectionPool):
    """redis-py's pool of connections to the master the Sentinels name, which asks them where the master is
    only when it connects. This one also asks when a connection is taken, at most every
    `MASTER_CHECK_EVERY` seconds: a master the Sentinels have replaced without its clients noticing (a
    second failover, a partition: it still takes writes, which its successor never sees) is left within a
    second, its connections dropped, rather than when it is finally made a replica."""

    _next_check = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + MASTER_CHECK_EVERY
            # No master known now, mid-failover: connecting waits for one (FailoverRetry).
            with contextlib.suppress(redis.ConnectionError):
                self.get_master_address()  # type: ignore[no-untyped-call]  # untyped in redis-py
        return super().get_connection(*args, **kwargs)
