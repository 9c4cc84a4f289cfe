"""The worker's Prometheus metrics, and how tenants become label values.

Importing this module creates the metrics, so prometheus-client's mode is fixed by then: in a worker with a
prefork pool `PROMETHEUS_MULTIPROC_DIR` is already set (see `worker.metricsdir`) and every process writes its
samples to its own files there; anywhere else they stay in memory. `worker.observe` re-exports every name.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Self

from prometheus_client import Counter, Gauge, Histogram

#: The first `MAX_TENANT_LABELS` tenants a process sees have a label each, any later one counts as "other"
#: (so a fleet serving thousands of tenants stays scrapable); with `TEAMS_NOTIFY_METRICS_TENANTS=off` every
#: tenant counts as "all".
MAX_TENANT_LABELS = 50
OTHER_TENANT = "other"
ALL_TENANTS = "all"
_tenants: set[str] = set()
_tenants_lock = threading.Lock()
_label_tenants = True


def label_tenants(on: bool) -> None:
    """Tenants get labels of their own (the first `MAX_TENANT_LABELS`), or, off, all count as "all"."""
    global _label_tenants  # noqa: PLW0603 - one switch per process, set once at start
    _label_tenants = on


def tenant_label(tenant: str | None) -> str:
    """The tenant as a label value: itself among the first `MAX_TENANT_LABELS` seen, else "other"; "all" when
    tenant labels are off. A label value maps to itself, so labelling twice changes nothing."""
    if not _label_tenants:
        return ALL_TENANTS
    name = tenant or "-"
    with _tenants_lock:
        if name in _tenants:
            return name
        if len(_tenants) < MAX_TENANT_LABELS:
            _tenants.add(name)
            return name
    return OTHER_TENANT


class TenantCounter(Counter):
    """A counter with a `tenant` label whose values are bounded by `tenant_label`, however it is called."""

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Self:
        if "tenant" in labelkwargs:
            labelkwargs["tenant"] = tenant_label(labelkwargs["tenant"])
        elif labelvalues:
            at = self._labelnames.index("tenant")
            labelvalues = (*labelvalues[:at], tenant_label(labelvalues[at]), *labelvalues[at + 1 :])
        return super().labels(*labelvalues, **labelkwargs)


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
#: The same by tenant (bounded: `tenant_label`).
TENANT_REQUESTS = TenantCounter(
    "teams_notify_tenant_requests", "Graph requests by tenant and outcome", ["tenant", "outcome"]
)
RECIPIENTS_SENT = Counter("teams_notify_recipients_sent", "Bulk recipients Graph accepted")
RECIPIENTS_DEAD = Counter("teams_notify_recipients_dead_lettered", "Bulk recipients in dead-lettered requests")
#: Token requests to Entra by tenant (bounded: `tenant_label`) and outcome: issued, or why not
#: (credentials_refused, entra_unavailable, ...).
TOKEN_REQUESTS = TenantCounter(
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
#: How long a send waited in its task for the slot the scheduler reserved (tens of milliseconds at most).
SLOT_WAIT = Histogram(
    "teams_notify_slot_wait_seconds",
    "Time a send waited for its reserved slot",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5),
)
#: From a job's enqueue to its last request ending (sent or dead-lettered), by endpoint.
JOB_SECONDS = Histogram(
    "teams_notify_job_seconds",
    "Time from a job's enqueue to its last request ending",
    ["endpoint"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
#: The worker's processes alive: its main process, plus its pool's children under prefork. Each sets 1 for
#: itself; across processes the live ones are summed (a child that exits is forgotten: `worker.exporter`).
WORKER_PROCESSES = Gauge(
    "teams_notify_worker_processes",
    "Processes of this worker alive (the main one and its pool's children)",
    multiprocess_mode="livesum",
)


def job_ended(endpoint: str, created_at: float | None) -> None:
    """Counts a job that ended in this process: its time since enqueue (a job enqueued for later counts from
    its enqueue too), or nothing when its creation time is unknown."""
    if created_at is not None:
        JOB_SECONDS.labels(endpoint).observe(max(time.time() - created_at, 0.0))
