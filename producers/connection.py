"""The one way teams-notify connects to Redis, shared by the producers, the worker and the CLI."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

from producers.errors import ConfigurationError

#: Where the producers find Redis when neither `redis_url=` nor `TEAMS_NOTIFY_REDIS_URL` says.
DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def redacted(url: str) -> str:
    """A Redis URL without its user and password, fit for an error message or a log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def connect(url: str, variable: str = "TEAMS_NOTIFY_REDIS_URL") -> redis.Redis:
    """A Redis client for the URL; a malformed URL is a configuration error naming the variable."""
    try:
        return redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
        )
    except ValueError as exc:
        raise ConfigurationError(f"{variable}: {exc}") from None
