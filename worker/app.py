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
from producers.connection import connect
from worker import broker, config, observe
from worker.auth import TokenProvider
from worker.delivery import Delivery
from worker.graph import GraphClient
from worker.heartbeat import Heartbeat
from worker.jobs import JobStore
from worker.lanes import LaneStore
from worker.ratelimit import RateLimiter
from worker.scheduler import Scheduler

log = logging.getLogger(__name__)

#: Where a job's callback task goes unless the producer named a queue: Celery's own default queue.
CELERY_DEFAULT_QUEUE = "celery"


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
    """The Celery app over its broker (Redis, Redis through Sentinel, or RabbitMQ: `worker.broker`); admin
    tasks return their results through the Redis result backend on the store.

    A message is only how a ready request reaches a worker: what must happen to it is in Redis (see
    `worker.lanes`), so a lost, duplicated or late message costs a few seconds at most, never a request.
    """
    settings = settings or config.load()
    app = FleetApp("teams_notify", include=["worker.tasks"])
    app.conf.update(
        task_default_queue=keys.QUEUE,
        task_routes={"teams_notify.admin.*": {"queue": keys.ADMIN_QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # a running send keeps its lease alive
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        teams_notify_log_format=settings.log_format,
        accept_content=["json"],
        result_serializer="json",
        result_expires=3600,
        worker_send_task_events=True,  # Flower (and `celery events`) see each task received, started, done
        task_send_sent_event=True,  # ... and each one published
    )
    broker.configure(app, settings)
    return app


class Resources:
    """What one worker process shares between its tasks: Redis, the Graph client, the token provider."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.redis: redis.Redis = connect(settings.redis_url)
        self.jobs = JobStore(self.redis)
        self.lanes = LaneStore(self.redis)
        self.graph = GraphClient(settings.graph_url)
        self.tokens = TokenProvider(settings, self.redis)
        self.heartbeat = Heartbeat(self.lanes)
        self.heartbeat.start()
        self.delivery = Delivery(self.jobs, self.lanes, self.tokens, self.graph, settings.tenant_id, self.heartbeat)

    def limiter(self) -> RateLimiter | None:
        """Pacing at the configured limits, or None when it is off."""
        client_id, _ = self.settings.require_credentials()
        return RateLimiter(self.redis, self.settings.rate_limits, client_id) if self.settings.rate_limits else None

    def close(self) -> None:
        """Stops the heartbeat and closes the pools."""
        self.heartbeat.stop()
        self.tokens.close()
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
    _stop_scheduler()
    observe.watch_fleet(None)
    with _lock:
        if _resources is not None:
            _resources.close()
            _resources = None


_scheduler: Scheduler | None = None


@worker_ready.connect
def _start_scheduler(sender: Any = None, **_: Any) -> None:
    """Each worker runs the scheduler; the one holding its lock hands requests out."""
    global _scheduler  # noqa: PLW0603 - one per worker, by design
    res = resources()

    def publish(job_id: str, index: int, lane: str, at: float) -> None:
        app.send_task(keys.SEND_TASK, args=[job_id, index, lane, at], queue=keys.QUEUE)

    def publish_many(lane: str, refs: list[str]) -> None:
        app.send_task(keys.SEND_MANY_TASK, args=[lane, refs], queue=keys.QUEUE)

    callback_queue = broker.CallbackQueues(app, res.settings)

    def call_back(task: str, queue: str | None, status: dict[str, Any]) -> None:
        options: dict[str, Any] = {"queue": callback_queue(queue or CELERY_DEFAULT_QUEUE)}  # a name, or a Queue
        app.send_task(task, args=[status], **options)

    # worker_ready's sender is the worker's Consumer; its controller (the WorkController) knows the pool size.
    controller = getattr(sender, "controller", None)
    node = getattr(sender, "hostname", None) or getattr(controller, "hostname", None) or "worker"
    slots = int(getattr(controller, "concurrency", None) or 1)
    settings = res.settings
    _scheduler = Scheduler(
        res.redis,
        res.jobs,
        res.limiter(),
        publish,
        call_back,
        node=node,
        slots=slots,
        default_tenant=settings.tenant_id,
        retention=settings.retention,
        publish_many=publish_many,
    )
    _scheduler.start()
    observe.watch_fleet(res.redis)  # dead letters and lanes, read from Redis at each scrape of /metrics


def _stop_scheduler() -> None:
    """Stops this worker's scheduler, handing the lead to another worker at once."""
    if _scheduler is not None:
        _scheduler.stop()
        _scheduler.join(timeout=5)


app = create_app()
