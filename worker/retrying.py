"""The one retry policy: how long a failed request waits in its lane, and how long Redis is waited for.

A transient Graph failure puts the request back in its lane, delayed (`backoff`): exponential in the
attempts made, jittered so that requests failing together spread out, never shorter than Graph's
Retry-After. The wait costs no worker slot and no Celery countdown: the scheduler hands the request out
again when its time has come. After `MAX_ATTEMPTS` it is dead-lettered.

`persistently` is the in-process retry (tenacity) for the one step that must not be given up: recording
what Graph already accepted while Redis is away for a few seconds.
"""

from __future__ import annotations

import logging
import math
import random
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

import redis
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential, wait_random

#: Attempts of one request before a transient failure is dead-lettered.
MAX_ATTEMPTS = 24
#: Backoff after the first failed attempt, and its cap.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 120.0
#: How long a worker keeps trying to record an outcome while Redis is unreachable.
REDIS_PATIENCE = 120.0

log = logging.getLogger(__name__)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds: a number (decimals allowed) or an HTTP date; None when absent or malformed."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def retry_after_of(exc: BaseException | None) -> float:
    """What Graph asked us to wait before the next attempt (0 when it did not say)."""
    return float(getattr(exc, "retry_after", None) or 0.0)


def backoff(attempts: int, exc: BaseException | None, rand: random.Random | None = None) -> float:
    """Seconds a request waits after its `attempts`-th failure: jittered exponential, never before Retry-After."""
    wait = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** min(max(attempts - 1, 0), 16))
    wait *= 0.5 + (rand or random).random() / 2
    return max(wait, retry_after_of(exc))


def persistently() -> Retrying:
    """Retries a Redis step through a short outage (connection and timeout errors) for `REDIS_PATIENCE` s."""
    return Retrying(
        retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
        stop=stop_after_delay(REDIS_PATIENCE),
        wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.5),
        before_sleep=lambda state: log.warning("Redis unreachable (attempt %d); trying again", state.attempt_number),
        reraise=True,
    )
