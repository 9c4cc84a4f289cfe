"""Checks of the keyword options every `notify_*` takes; each refusal names the option."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from producers.errors import InvalidNotification
from producers.ids import check_tenant_id

#: The longest idempotency key accepted (it becomes part of a Redis key).
MAX_IDEMPOTENCY_KEY = 256
#: How far ahead `send_at` may be.
MAX_SCHEDULE_AHEAD = 35 * 86400
#: A Celery task name (and queue name): dotted words, as Celery names them.
_CELERY_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


@dataclass(frozen=True)
class Options:
    """The checked options of one enqueue."""

    tenant_id: str | None = None
    idempotency_key: str | None = None
    send_at: float | None = None
    callback: str | None = None
    callback_queue: str | None = None

    @property
    def scheduled_for(self) -> str:
        """`send_at` in ISO 8601 (UTC), or '' when none was given."""
        return datetime.fromtimestamp(self.send_at, UTC).isoformat() if self.send_at is not None else ""


def check(
    *,
    tenant_id: Any = None,
    idempotency_key: Any = None,
    send_at: Any = None,
    callback: Any = None,
    callback_queue: Any = None,
    now: float | None = None,
) -> Options:
    """The options, checked; raises InvalidNotification naming the first bad one."""
    return Options(
        tenant_id=_tenant(tenant_id),
        idempotency_key=_idempotency_key(idempotency_key),
        send_at=_send_at(send_at, time.time() if now is None else now),
        callback=_celery_name("callback", callback),
        callback_queue=_celery_name("callback_queue", callback_queue),
    )


def _tenant(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise TypeError(f"must be a string, not {type(value).__name__}")
        return check_tenant_id(value)
    except (ValueError, TypeError) as exc:
        raise InvalidNotification(f"tenant_id: {exc}", "tenant_id") from None


def _idempotency_key(value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and 0 < len(value) <= MAX_IDEMPOTENCY_KEY):
        raise InvalidNotification(
            f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY} characters", "idempotency_key"
        )
    return value


def _send_at(value: Any, now: float) -> float | None:
    """Epoch seconds of an aware datetime or a number; naive, non-finite or over 35 days ahead is refused."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidNotification("send_at: a naive datetime is ambiguous; give it a time zone", "send_at")
        when = value.timestamp()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        when = float(value)
        if not math.isfinite(when):
            raise InvalidNotification("send_at: must be a finite number of epoch seconds", "send_at")
    else:
        raise InvalidNotification(
            f"send_at: must be an aware datetime or epoch seconds, not {type(value).__name__}", "send_at"
        )
    if when > now + MAX_SCHEDULE_AHEAD:
        raise InvalidNotification("send_at: at most 35 days ahead", "send_at")
    return when


def _celery_name(name: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and _CELERY_NAME.match(value)):
        raise InvalidNotification(f"{name}: must be a Celery task or queue name such as 'app.tasks.done'", name)
    return value
