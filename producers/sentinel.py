"""A store reached through Redis Sentinel: its URL, and how the Sentinels are asked where the master is.

`redis+sentinel://[:password@]host:port[,host:port...]/master_name[/db]` names the Sentinels that watch one
master; `SentinelURL.parse` reads it, and a malformed one is a ConfigurationError that names the variable it
came from, never the password.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from redis.backoff import EqualJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from producers.errors import ConfigurationError
from producers.redaction import redacted

#: The scheme of a store reached through Redis Sentinel.
SENTINEL_SCHEME = "redis+sentinel"
#: A Sentinel's port when the URL gives none.
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelURL:
    """A parsed `redis+sentinel://` URL: the Sentinels to ask, the master's name, its database and password."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, variable: str = "TEAMS_NOTIFY_REDIS_URL") -> SentinelURL:
        """Parses the URL; a malformed one is a ConfigurationError naming the variable, never the password."""

        def bad(why: str) -> ConfigurationError:
            return ConfigurationError(
                f"{variable}={redacted(url)!r}: {why} (expected {SENTINEL_SCHEME}://[:password@]host:port"
                "[,host:port...]/master_name[/db])"
            )

        scheme, sep, rest = url.strip().partition("://")
        if scheme != SENTINEL_SCHEME or not sep:
            raise bad(f"not a {SENTINEL_SCHEME}:// URL")
        rest, _, query = rest.partition("?")
        userinfo, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        user, _, secret = userinfo.partition(":")  # `:password@`, or `user:password@` for an ACL user
        username, password = unquote(user) or None, unquote(secret) or None
        sentinels = tuple(_host_port(item, bad) for item in hosts.split(","))
        names = [unquote(part) for part in path.split("/") if part]
        if not names or len(names) > 2:
            raise bad("the path must be /master_name or /master_name/db")
        db = 0
        if len(names) == 2:
            if not names[1].isdigit():
                raise bad(f"the database {names[1]!r} is not a number")
            db = int(names[1])
        options = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(options) - {"sentinel_password"})
        if unknown:
            raise bad(f"unknown option {unknown[0]!r} (known: sentinel_password)")
        sentinel_password = options.get("sentinel_password", [None])[-1] or None
        return cls(sentinels, names[0], db, username, password, sentinel_password)

    def sentinel(self, **kwargs: Any) -> Sentinel:
        """A client of the Sentinels: quick to give up on one that is down, so the next is asked at once."""
        sentinel_kwargs: dict[str, Any] = {
            "socket_connect_timeout": 1.0,
            "socket_timeout": 1.0,
            "retry": Retry(EqualJitterBackoff(), 0),
        }
        if self.sentinel_password:
            sentinel_kwargs["password"] = self.sentinel_password
        return Sentinel(list(self.sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis-py 8.2

    def master_address(self) -> tuple[str, int]:
        """Where the master is now, as the Sentinels say (MasterNotFoundError, a ConnectionError, if none knows)."""
        sentinel = self.sentinel()
        try:
            host, port = sentinel.discover_master(self.master_name)  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis-py 8.2
            return str(host), int(port)
        finally:
            sentinel.close()


def _host_port(item: str, bad: Callable[[str], ConfigurationError]) -> tuple[str, int]:
    text = item.strip()
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise bad(f"{item!r} names no Sentinel host")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise bad(f"{item!r} has no valid port")
    return host, int(port_text) if port_text else DEFAULT_SENTINEL_PORT


def is_sentinel(url: str) -> bool:
    """True when the URL names Sentinels rather than one Redis."""
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")
