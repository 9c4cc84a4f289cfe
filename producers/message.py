"""Celery task messages (protocol 2, JSON) written straight into the Redis queue.

The producers do not depend on Celery: a backend app installs only redis and pydantic. Writing the message
ourselves is also what lets the job record and its message go to Redis in one MULTI/EXEC, so a job is
either wholly enqueued or not at all. The envelope is the one kombu's Redis transport writes (a JSON
object LPUSHed on the list named after the queue); tests check that a real Celery worker consumes it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any


def task_message(task: str, args: list[Any], queue: str, task_id: str | None = None) -> str:
    """The JSON envelope of one Celery task call, ready to LPUSH on `queue`."""
    task_id = task_id or str(uuid.uuid4())
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([args, {}, embed]).encode()
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": repr(args),
            "kwargsrepr": "{}",
            "origin": f"{os.getpid()}@{socket.gethostname()}",
            "ignore_result": True,
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope)
