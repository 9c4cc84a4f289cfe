"""A local fleet in child processes: a private redis-server and `teams-notify worker`s, and for the
high-availability layouts a private RabbitMQ node and a Redis master with replicas and Sentinels.

The demo, the integration tests and the benchmarks all start what they need through this module, so there
is one way to start, wait for and stop each piece. The pieces live in worker.sandboxredis (redis-server,
Sentinels), worker.sandboxrabbitmq (a RabbitMQ node), worker.sandboxworker (worker processes and their
environment) and worker.sandboxchild (ports, timeouts, stopping children); every name is importable from here.
"""

from __future__ import annotations

from worker.sandboxchild import START_TIMEOUT, STOP_TIMEOUT, SessionChild, free_port, terminate, wait_until
from worker.sandboxrabbitmq import RabbitMQNode, amqp_answers, rabbitmq_server
from worker.sandboxredis import RedisSentinelCluster, RedisServer, answers, redis_answers
from worker.sandboxworker import WorkerProcess, simulator_env, wait_ready, worker_env

#: The names these helpers had when they were private to this module.
_wait = wait_until
_Child = SessionChild

__all__ = [
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "RabbitMQNode",
    "RedisSentinelCluster",
    "RedisServer",
    "SessionChild",
    "WorkerProcess",
    "amqp_answers",
    "answers",
    "free_port",
    "rabbitmq_server",
    "redis_answers",
    "simulator_env",
    "terminate",
    "wait_ready",
    "wait_until",
    "worker_env",
]
