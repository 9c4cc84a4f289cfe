"""The one retry policy: short waits in-process (tenacity), long ones handed back to Celery.

A transient Graph error is retried in the worker slot only while the wait is short; a Retry-After longer
than `IN_PROCESS_MAX_WAIT` or a third failure ends the in-process loop, and the task is re-scheduled through
Celery (`celery_countdown`), always below the broker's visibility timeout. Nothing is ever retried before
Graph's Retry-After.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_exponential_jitter

from worker.errors import TransientGraphError

#: Attempts of one request inside one task run.
IN_PROCESS_ATTEMPTS = 3
#: The longest wait spent sleeping in a worker slot; anything longer goes back to Celery.
IN_PROCESS_MAX_WAIT = 5.0
#: How long one task run may spend retrying in-process, all waits included.
IN_PROCESS_MAX_TIME = 20.0
#: Attempts of one request (all task runs together) before a transient failure is dead-lettered.
MAX_ATTEMPTS = 24
#: Backoff of Celery re-schedules: first, and cap (kept well under the visibility timeout).
CELERY_BACKOFF = 5.0
CELERY_MAX_COUNTDOWN = 240.0

log = logging.getLogger(__name__)
_backoff = wait_exponential_jitter(multiplier=0.5, max=IN_PROCESS_MAX_WAIT, jitter=0.5)


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


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    return max(float(_backoff(state)), retry_after_of(exc))


class _stop_if_asked_too_long(stop_base):  # noqa: N801 - named like tenacity's own stop conditions
    """Stops when Graph's Retry-After is too long to sleep in a worker slot."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return retry_after_of(exc) > IN_PROCESS_MAX_WAIT


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("attempt %d failed (%s); retrying in %.2fs", state.attempt_number, exc, wait)


def in_process(sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """Retries TransientGraphError a few times with short, jittered waits that honour Retry-After."""
    return Retrying(
        before_sleep=_log_retry,
        retry=retry_if_exception_type(TransientGraphError),
        stop=stop_after_attempt(IN_PROCESS_ATTEMPTS)
        | stop_after_delay(IN_PROCESS_MAX_TIME)
        | _stop_if_asked_too_long(),
        wait=_wait,
        sleep=sleep,
        reraise=True,
    )


def celery_countdown(attempts: int, exc: BaseException | None) -> float:
    """Seconds before the next task run: exponential in the attempts made, jittered, never before Retry-After."""
    runs = max(attempts // IN_PROCESS_ATTEMPTS - 1, 0)
    backoff = min(CELERY_MAX_COUNTDOWN, CELERY_BACKOFF * 2.0 ** min(runs, 16))
    backoff *= 0.5 + random.random() / 2  # jitter: requests retried together spread out
    return max(backoff, retry_after_of(exc))
