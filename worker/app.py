"""The Celery app of the fleet, and the resources each worker process opens once and closes at exit."""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any

import redis
from celery import Celery
from celery.apps import worker as celery_worker
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown

from producers import keys
from producers.notifier import connect
from worker import config, observe
from worker.auth import TokenProvider
from worker.delivery import Delivery
from worker.graph import GraphClient
from worker.jobs import JobStore
from worker.ratelimit import RateLimiter
from worker.sweeper import Sweeper, stall_after

log = logging.getLogger(__name__)


class FleetWorker(celery_worker.Worker):
    """Celery's worker, quiet on SIGTERM when logs are JSON (its shutdown line is printed, not logged)."""

    def install_platform_tweaks(self, worker: Any) -> None:
        super().install_platform_tweaks(worker)
        if observe.uses_json(self.app.conf.get("teams_notify_log_format", "auto")):
            log.info("%s: warm shutdown on SIGTERM", worker.hostname)
            install = celery_worker.install_worker_term_handler  # type: ignore[attr-defined]  # not in the stubs
            install(worker, verbose=False)


class FleetApp(Celery):
    """The fleet's Celery app: its worker is a FleetWorker."""

    @cached_property
    def Worker(self) -> Any:  # noqa: N802 - Celery's own name
        return self.subclass_with_self(FleetWorker)


def create_app(settings: config.Settings | None = None) -> Celery:
    """The Celery app over Redis, set for at-least-once delivery: late acks, requeue on a lost worker."""
    settings = settings or config.load()
    app = FleetApp("teams_notify", broker=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        task_default_queue=keys.QUEUE,
        task_routes={"teams_notify.admin.*": {"queue": keys.ADMIN_QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        # A message a dead worker held goes back to the queue after this long. A restored duplicate of a
        # message still held elsewhere is harmless: each request ends once (jobs.finish, the lease).
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Sweep for such messages every tenth of the timeout (kombu's default is every 100 s or so).
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
        },
        task_serializer="json",
        teams_notify_log_format=settings.log_format,
        accept_content=["json"],
    )
    return app


class Resources:
    """What one worker process shares between its tasks: Redis, the Graph client, the token provider."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.redis: redis.Redis = connect(settings.redis_url)
        self.jobs = JobStore(self.redis)
        self.graph = GraphClient(settings.graph_url)
        self.tokens = TokenProvider(settings)
        client_id, _ = settings.require_credentials()
        limiter = RateLimiter(self.redis, settings.rate_limits, client_id) if settings.rate_limits else None
        self.delivery = Delivery(self.jobs, self.tokens, self.graph, settings.tenant_id, limiter=limiter)

    def close(self) -> None:
        """Closes the pools."""
        self.graph.close()
        self.redis.close()


_resources: Resources | None = None
_lock = threading.Lock()


def resources() -> Resources:
    """This process's resources, opened on first use (after a prefork child has forked)."""
    global _resources  # noqa: PLW0603 - one set per process, by design
    with _lock:
        if _resources is None:
            _resources = Resources(config.load())
        return _resources


@worker_process_shutdown.connect
@worker_shutdown.connect
def _close_resources(**_: Any) -> None:
    global _resources  # noqa: PLW0603 - one set per process, by design
    with _lock:
        if _resources is not None:
            _resources.close()
            _resources = None


_sweeper: Sweeper | None = None


@worker_ready.connect
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    """Each worker watches for jobs whose messages were lost (one sweeps per round)."""
    global _sweeper  # noqa: PLW0603 - one per worker process, by design
    res = resources()
    stall = stall_after(res.settings.visibility_timeout)

    def redispatch(job_id: str) -> None:
        app.send_task(keys.DISPATCH_TASK, args=[job_id], queue=keys.QUEUE)

    _sweeper = Sweeper(res.redis, stall, redispatch)
    _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()


@worker_ready.connect
def _stay_paused(sender: Any = None, **_: Any) -> None:
    """A worker that starts while the fleet is paused does not take jobs either."""
    if sender is not None and resources().redis.exists(keys.paused()):
        sender.app.control.cancel_consumer(keys.QUEUE, destination=[sender.hostname], reply=False)
        log.info("the fleet is paused: %s does not take jobs until `teams-notify resume`", sender.hostname)


app = create_app()
