"""A backend's own Celery app, apart from the fleet: its task records each job status it is called back with.

Run as `celery -A tests.integration.callback_app worker -Q backend-callbacks` with CALLBACK_REDIS_URL set.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

REDIS_URL = os.environ.get("CALLBACK_REDIS_URL", "redis://localhost:6379/0")
#: The list the task appends each status it receives to.
RECEIVED = "backend:callbacks"
QUEUE = "backend-callbacks"
TASK = "backend.notification_done"

app = Celery("backend", broker=REDIS_URL)
app.conf.update(task_default_queue=QUEUE, worker_hijack_root_logger=False)


@app.task(name=TASK)
def notification_done(status: dict[str, Any]) -> None:
    """Records the final status of a teams-notify job."""
    client = redis.Redis.from_url(REDIS_URL)
    client.rpush(RECEIVED, json.dumps(status))
    client.close()
