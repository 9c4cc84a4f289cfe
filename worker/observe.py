"""What operators see: logs (one JSON object a line, or text on a terminal, never a secret) and metrics."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis
from celery.signals import setup_logging
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.deadletters import DeadLetterStore
from worker.lanes import LaneStore

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

#: Graph requests put off by cause: `throttled` (429, 503), `server_error` (500, 502, 504), `transport` (a
#: timeout, a dropped connection), `auth` (a refused token retried, an Entra or credential outage).
RETRIES = Counter("teams_notify_retries", "Graph requests retried, by endpoint and cause", ["endpoint", "cause"])
THROTTLED = Counter("teams_notify_throttled", "429 answers from Graph, by endpoint", ["endpoint"])
RETRY_AFTER = Histogram(
    "teams_notify_retry_after_seconds",
    "Retry-After Graph asked for with a 429 or 503",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
RECIPIENTS_DEAD = Counter("teams_notify_recipients_dead_lettered", "Bulk recipients in dead-lettered requests")
#: How long a send waited in its task for the slot the scheduler reserved (tens of milliseconds at most).
SLOT_WAIT = Histogram(
    "teams_notify_slot_wait_seconds",
    "Time a send waited for its reserved slot",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5),
)
#: Requests that ended or were put off by tenant: the first `MAX_TENANT_LABELS` tenants a process sees have
#: a label each, any later one counts as "other" (so a fleet serving thousands of tenants stays scrapable).
TENANT_REQUESTS = Counter("teams_notify_tenant_requests", "Graph requests by tenant and outcome", ["tenant", "outcome"])
MAX_TENANT_LABELS = 50
OTHER_TENANT = "other"
_tenants: set[str] = set()
_tenants_lock = threading.Lock()


def tenant_label(tenant: str | None) -> str:
    """The tenant as a label value: itself among the first `MAX_TENANT_LABELS` seen, else "other"."""
    name = tenant or "-"
    with _tenants_lock:
        if name in _tenants:
            return name
        if len(_tenants) < MAX_TENANT_LABELS:
            _tenants.add(name)
            return name
    return OTHER_TENANT


class FleetCollector(Collector):
    """What waits in Redis, read at each scrape: dead letters, and each lane's waiting, delayed, handed and
    in-flight requests. Redis unreachable, the scrape has none of these samples rather than failing."""

    STATES = ("waiting", "delayed", "handed", "in_flight")

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("teams_notify_dead_letters", "Dead letters waiting for a person now"),
            GaugeMetricFamily(
                "teams_notify_lane_requests", "Requests in each lane now, by state", labels=["lane", "state"]
            ),
        )

    def collect(self) -> Iterable[Metric]:
        dead, lanes = self._families()
        try:
            dead.add_metric([], DeadLetterStore(self._redis).count())
            store = LaneStore(self._redis)
            for state in store.states(store.lane_ids()):
                for name in self.STATES:
                    lanes.add_metric([state.lane, name], getattr(state, name))
        except redis.RedisError as exc:
            logging.getLogger(__name__).debug("fleet metrics not read: %s", exc)
            return []
        return [dead, lanes]


_fleet: FleetCollector | None = None
_fleet_lock = threading.Lock()


def watch_fleet(client: redis.Redis | None) -> None:
    """Exports the fleet's state read from Redis through `client` at each scrape; None stops it."""
    global _fleet  # noqa: PLW0603 - one per process, by design
    with _fleet_lock:
        if _fleet is not None:
            REGISTRY.unregister(_fleet)
            _fleet = None
        if client is not None:
            _fleet = FleetCollector(client)
            REGISTRY.register(_fleet)


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
