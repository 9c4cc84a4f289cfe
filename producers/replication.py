"""How many replicas must hold a producer's enqueue before it returns (`TEAMS_NOTIFY_REDIS_WAIT`).

Waiting for replicas (redis' `WAIT`, see `producers.connection.confirm_replicated`) means a failover right
after the producer was told "enqueued" cannot lose the job. It is the default through Sentinels, and off with
one Redis; `ReplicaWait.parse` reads what the variable asks for instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from producers.errors import ConfigurationError
from producers.sentinel import is_sentinel

#: Replicas a producer's enqueue waits for, and how long, through Sentinels unless `TEAMS_NOTIFY_REDIS_WAIT`
#: says otherwise (`0` or `off`: no wait; `N` or `N,SECONDS`).
DEFAULT_WAIT_REPLICAS = 1
DEFAULT_WAIT_TIMEOUT = 5.0


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas must hold a producer's enqueue before it returns, and how long to wait for them."""

    replicas: int = 0
    timeout: float = DEFAULT_WAIT_TIMEOUT

    @classmethod
    def parse(cls, value: str | None, sentinel: bool, variable: str = "TEAMS_NOTIFY_REDIS_WAIT") -> ReplicaWait:
        """`auto` (or unset): one replica within 5 s through Sentinels, none with one Redis; `0` or `off`: no
        wait; `N` replicas, or `N,SECONDS` (`1,2.5` or `1,2500ms`)."""
        text = (value or "").strip().lower()
        if text in ("", "auto"):
            return cls(DEFAULT_WAIT_REPLICAS if sentinel else 0)
        if text in ("off", "none"):
            return cls(0)
        count, comma, timeout_text = text.partition(",")
        if not count.strip().isdigit() or (comma and not timeout_text.strip()):
            raise ConfigurationError(f"{variable}={value!r} is not auto, off, N or N,SECONDS (e.g. 1,5s)")
        timeout = _seconds(timeout_text.strip(), variable, value or "") if comma else DEFAULT_WAIT_TIMEOUT
        return cls(int(count), timeout)

    @classmethod
    def from_environment(cls, url: str) -> ReplicaWait:
        """The wait `TEAMS_NOTIFY_REDIS_WAIT` asks for, for a store at this URL."""
        return cls.parse(os.environ.get("TEAMS_NOTIFY_REDIS_WAIT"), is_sentinel(url))

    def __str__(self) -> str:
        return f"{self.replicas},{self.timeout:g}s" if self.replicas else "off"


def _seconds(text: str, variable: str, value: str) -> float:
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2], 0.001
    elif text.endswith("s"):
        text = text[:-1]
    try:
        seconds = float(text) * scale
    except ValueError:
        raise ConfigurationError(f"{variable}={value!r}: {text!r} is not a number of seconds") from None
    if not 0 < seconds <= 60:
        raise ConfigurationError(f"{variable}={value!r}: the timeout must be over 0 and at most 60 seconds")
    return seconds
