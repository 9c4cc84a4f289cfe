"""A worker's /metrics: the whole worker's samples, its pool's processes included, and the fleet read from Redis.

With a thread pool (the default) the worker is one process and its metrics are in its memory: /metrics serves
prometheus_client's default registry. With a prefork pool every process writes its samples to its own files
in the multiprocess directory (`worker.metricsdir`) and /metrics serves a registry that reads them all, so
the pool children's counters appear in the one scrape. Either way the fleet collector (dead letters, lanes)
is registered on the registry served.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery.signals import worker_before_create_process, worker_process_init, worker_process_shutdown
from prometheus_client import REGISTRY, CollectorRegistry, PlatformCollector, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from worker import metricsdir
from worker.config import Settings
from worker.deadletters import DeadLetterStore
from worker.lanes import LaneStore
from worker.metrics import WORKER_PROCESSES, label_tenants

log = logging.getLogger(__name__)

#: The files of a live gauge (`gauge_livesum_1234.db`): prometheus_client drops them when told the pid died.
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


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
            log.debug("fleet metrics not read: %s", exc)
            return []
        return [dead, lanes]


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_processes(path: str) -> list[int]:
    """Marks dead, for prometheus_client, every process with live-gauge files in the directory that no longer
    runs (a pool child that exited or was killed); returns their pids. Counters and histograms of a process
    that is gone stay counted, as they must."""
    pids = {int(found.group(1)) for name in os.listdir(path) if (found := _LIVE_GAUGE_FILE.match(name))}
    dead = sorted(pid for pid in pids if not alive(pid))
    for pid in dead:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    return dead


class PoolCollector(Collector):
    """Every process's samples, read from the multiprocess directory at each scrape, once the live gauges of
    processes that are gone are dropped."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._files = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]  # untyped

    def collect(self) -> Iterable[Metric]:
        forget_dead_processes(self._path)
        metrics: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]  # untyped
        return metrics


def pool_registry(path: str) -> CollectorRegistry:
    """The registry a prefork worker serves: every process's samples, and its main process's own figures
    (CPU, memory, file descriptors: `process_*`, and `python_info`)."""
    registry = CollectorRegistry()
    registry.register(PoolCollector(path))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


_served: CollectorRegistry = REGISTRY
_directory: str | None = None
_fleet: FleetCollector | None = None
_fleet_lock = threading.Lock()


def served_registry() -> CollectorRegistry:
    """The registry /metrics serves in this process (prometheus_client's default one unless under prefork)."""
    return _served


def serve_metrics(port: int, directory: str | None = None) -> bool:
    """Serves /metrics on the port (0: off): this process's metrics, or, with a multiprocess directory, every
    process's found there. False, with a warning, when the port is taken."""
    global _served, _directory
    if port == 0:
        return False
    registry = REGISTRY if directory is None else pool_registry(directory)
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        log.warning("metrics not served: port %d: %s", port, exc)
        return False
    _served, _directory = registry, directory
    WORKER_PROCESSES.set(1)
    return True


def watch_fleet(client: redis.Redis | None) -> None:
    """Exports the fleet's state read from Redis through `client` at each scrape; None stops it."""
    global _fleet  # noqa: PLW0603 - one per process, by design
    with _fleet_lock:
        if _fleet is not None:
            _served.unregister(_fleet)
            _fleet = None
        if client is not None:
            _fleet = FleetCollector(client)
            _served.register(_fleet)


@contextmanager
def worker_metrics(settings: Settings) -> Iterator[bool]:
    """The `worker` command's metrics while it runs: tenant labels as configured, /metrics served (from every
    process's files when the worker runs with a multiprocess directory); the directory, if the worker made
    it, removed at the end. Yields whether /metrics is served."""
    label_tenants(settings.metrics_tenants)
    directory = metricsdir.adopt()
    try:
        yield serve_metrics(settings.metrics_port, directory.path if directory else None)
    finally:
        if directory is not None:
            directory.remove()


@worker_process_init.connect
def _pool_process_started(**_: Any) -> None:
    """A prefork child counts itself among the worker's processes."""
    WORKER_PROCESSES.set(1)


@worker_process_shutdown.connect
def _pool_process_ending(pid: int | None = None, **_: Any) -> None:
    """A prefork child leaving (in the child, as it exits) drops its live gauges."""
    if metricsdir.configured() is not None:
        mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]  # untyped in prometheus_client


@worker_before_create_process.connect
def _replacing_pool_process(**_: Any) -> None:
    """In the main process, before the pool forks a child (at start, or to replace one that exited or was
    killed): the children that are gone are forgotten."""
    if _directory is not None:
        forget_dead_processes(_directory)
