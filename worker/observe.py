"""What operators see: logs (one JSON object a line, or text on a terminal, never a secret) and metrics.

The metrics are defined in `worker.metrics` and served by `worker.exporter`; every name is re-exported here
(`observe.REQUESTS`, `observe.job_ended`, `observe.watch_fleet`, ...).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from celery.signals import setup_logging

from worker.exporter import (
    FleetCollector,
    forget_dead_processes,
    serve_metrics,
    served_registry,
    watch_fleet,
    worker_metrics,
)
from worker.metrics import (
    ALL_TENANTS,
    GRAPH_RESPONSES,
    GRAPH_SECONDS,
    JOB_SECONDS,
    MAX_TENANT_LABELS,
    OTHER_TENANT,
    RECIPIENTS_DEAD,
    RECIPIENTS_SENT,
    REQUESTS,
    RETRIES,
    RETRY_AFTER,
    SLOT_WAIT,
    TENANT_REQUESTS,
    THROTTLED,
    TOKEN_REQUESTS,
    TOKEN_WAIT,
    TOKENS_SERVED,
    WORKER_PROCESSES,
    TenantCounter,
    job_ended,
    label_tenants,
    tenant_label,
)

__all__ = [
    "ALL_TENANTS",
    "GRAPH_RESPONSES",
    "GRAPH_SECONDS",
    "JOB_SECONDS",
    "MAX_TENANT_LABELS",
    "OTHER_TENANT",
    "RECIPIENTS_DEAD",
    "RECIPIENTS_SENT",
    "REQUESTS",
    "RETRIES",
    "RETRY_AFTER",
    "SLOT_WAIT",
    "TENANT_REQUESTS",
    "THROTTLED",
    "TOKENS_SERVED",
    "TOKEN_REQUESTS",
    "TOKEN_WAIT",
    "WORKER_PROCESSES",
    "FleetCollector",
    "JsonFormatter",
    "TenantCounter",
    "TextFormatter",
    "configure",
    "forget_dead_processes",
    "job_ended",
    "label_tenants",
    "scrub",
    "serve_metrics",
    "served_registry",
    "tenant_label",
    "uses_json",
    "watch_fleet",
    "worker_metrics",
]

#: Anything that looks like a bearer token or a client secret is masked before a line is written.
_SECRET = re.compile(r"(Bearer\s+)[A-Za-z0-9\-_.~+/=]+|(client_secret=)[^&\s]+", re.IGNORECASE)


def scrub(text: str) -> str:
    """The text with bearer tokens and client secrets masked."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


#: The attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _field(value: Any) -> Any:
    """An `extra=` value as a JSON field: strings scrubbed, anything JSON cannot hold as its text."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the fields passed with `extra=`, and the exception
    if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "process": record.process,
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in entry and not name.startswith("_"):
                entry[name] = _field(value)
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
