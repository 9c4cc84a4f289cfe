"""How a URL is written to a log or a status: without the credentials or the query it may carry."""

from __future__ import annotations


def redacted(url: str) -> str:
    """A URL (Redis, Sentinel or AMQP; several joined by `;`) without credentials or query, fit for a log."""
    if ";" in url:
        return ";".join(redacted(part) for part in url.split(";"))
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", scheme
    rest = rest.rpartition("@")[2]  # user and password, whatever they contain, end at the last '@'
    for mark in "?#":
        rest = rest.partition(mark)[0]
    return f"{scheme}{sep}{rest}"
