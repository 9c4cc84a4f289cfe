"""The container's health check: the worker in this container serves teams-notify's /metrics.

The metrics endpoint is a thread of the worker process, started before Celery, so an answer means the
worker process is alive and not wedged in start-up. It does not look at Redis on purpose: a worker that
loses Redis keeps running and carries on when Redis returns, and restarting it would not help.

Standard library only, so that a check every 30 s costs a few milliseconds, not a Celery import.
Exit 0: healthy; exit 1: unhealthy, with one line saying why (Docker keeps it in `docker inspect`).
"""

from __future__ import annotations

import http.client
import os
import sys
import urllib.request

#: The worker's default metrics port (TEAMS_NOTIFY_METRICS_PORT).
DEFAULT_PORT = "9808"
#: Every metric the worker exports starts with this; another exporter on the port is not our worker.
PREFIX = b"teams_notify_"
TIMEOUT_SECONDS = 4.0


def check(port_text: str, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when healthy, otherwise why not."""
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        return f"TEAMS_NOTIFY_METRICS_PORT={port_text!r} is not a port number"
    if int(port_text) == 0:
        return "TEAMS_NOTIFY_METRICS_PORT=0: metrics are off, so there is no health to check (disable the check)"
    url = f"http://127.0.0.1:{int(port_text)}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except (OSError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors
        return f"{url}: {exc}"
    if PREFIX not in body:
        return f"{url} answers, but with no teams_notify_ metric: not the worker's endpoint"
    return None


def main() -> int:
    problem = check(os.environ.get("TEAMS_NOTIFY_METRICS_PORT", "").strip() or DEFAULT_PORT)
    if problem is None:
        print("healthy: the worker serves /metrics")
        return 0
    print(f"unhealthy: {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
