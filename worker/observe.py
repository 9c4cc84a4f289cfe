"""What operators see: logs (one JSON object a line, or text on a terminal, never a secret) and metrics."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from celery.signals import setup_logging
from prometheus_client import Counter, Histogram, start_http_server

#: Anything that looks like a bearer token or a client secret is masked before a line is written.
_SECRET = re.compile(r"(Bearer\s+)[A-Za-z0-9\-_.~+/=]+|(client_secret=)[^&\s]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """The text with bearer tokens and client secrets masked."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal, scrubbed like the JSON ones."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def uses_json(log_format: str) -> bool:
    """True for `json`, and for `auto` when stderr is not a terminal."""
    return log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())


def configure(log_format: str = "auto", level: str = "INFO") -> None:
    """Sets up the root logger on stderr in the chosen format (`auto`: text on a terminal, else JSON)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if uses_json(log_format) else TextFormatter())
    logging.captureWarnings(True)  # Python warnings (Celery's, say) become log lines like any other
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "msal", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@setup_logging.connect
def _keep_our_logging(**_: Any) -> None:
    """Connected, this stops Celery from replacing the logging `configure` set up."""


#: Graph answers by endpoint and HTTP status ("error" when the connection failed).
GRAPH_RESPONSES = Counter(
    "teams_notify_graph_responses", "Graph answers by endpoint and HTTP status", ["endpoint", "status"]
)
GRAPH_SECONDS = Histogram(
    "teams_notify_graph_request_seconds",
    "Time for Graph to answer one request",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
#: How requests ended (sent, dead_lettered) or were put off (retried, paced).
REQUESTS = Counter("teams_notify_requests", "Graph requests by outcome", ["endpoint", "outcome"])
RECIPIENTS_SENT = Counter("teams_notify_recipients_sent", "Bulk recipients Graph accepted")
#: Token requests to Entra by tenant and outcome: issued, or why not (credentials_refused, entra_unavailable, ...).
TOKEN_REQUESTS = Counter(
    "teams_notify_token_requests", "Token requests to Entra by tenant and outcome", ["tenant", "outcome"]
)
#: Tokens handed to sends by where they came from: this process's memory, the fleet's cache in Redis, or a
#: refresh the send waited for (its own or another worker's).
TOKENS_SERVED = Counter("teams_notify_tokens_served", "Tokens handed to sends, by source", ["source"])
TOKEN_WAIT = Histogram(
    "teams_notify_token_refresh_wait_seconds",
    "Time a send waited for a token refresh",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def serve_metrics(port: int) -> bool:
    """Serves /metrics on the port (0: off); False, with a warning, when the port is taken."""
    if port == 0:
        return False
    try:
        start_http_server(port)
    except OSError as exc:
        logging.getLogger(__name__).warning("metrics not served: port %d: %s", port, exc)
        return False
    return True
