"""`teams-notify bench --scenario enqueue`: what producers cost: a 1,000,000-recipient job and single sends.

Against a private Redis (no worker, no simulator): the seconds one process takes to enqueue a bulk job of a
million GUID recipients, the Redis memory it adds per recipient, the longest that Redis kept another
client waiting meanwhile (a separate process pings it every millisecond), and single `notify_user`
enqueues a second from one process.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import redis

from producers import Notifier
from worker import sandbox

#: Recipients of the big job, and single sends timed.
RECIPIENTS = 1_000_000
SINGLES = 3_000
BODY = {
    "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/bench"},
    "activityType": "pendingFinanceApprovalRequests",
    "previewText": {"content": "Internal spending team has a pending finance approval requests"},
}


def _ping(url: str, stop: Any, longest: Any) -> None:
    """In its own process: the longest PING round trip until told to stop."""
    client = redis.Redis.from_url(url)
    while not stop.is_set():
        began = time.perf_counter()
        client.ping()
        longest.value = max(longest.value, time.perf_counter() - began)
        time.sleep(0.001)


def enqueue(workdir: Path, timeout: float, say: Any) -> dict[str, Any]:
    """Runs the producer measurements; returns their figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = sandbox.RedisServer(workdir).start()
    try:
        client = redis.Redis.from_url(server.url)
        notifier = Notifier(server.url)
        recipients = [
            {
                "@odata.type": "microsoft.graph.aadUserNotificationRecipient",
                "userId": f"{i:08x}-4e49-4661-87f2-{i:012x}",
            }
            for i in range(RECIPIENTS)
        ]
        before = int(client.info("memory")["used_memory"])
        stop, longest = multiprocessing.Event(), multiprocessing.Value("d", 0.0)
        pinger = multiprocessing.Process(target=_ping, args=(server.url, stop, longest), daemon=True)
        pinger.start()
        time.sleep(0.2)
        began = time.perf_counter()
        job_id = notifier.notify_recipients({**BODY, "recipients": recipients})
        bulk_s = time.perf_counter() - began
        stop.set()
        pinger.join(10)
        added = int(client.info("memory")["used_memory"]) - before
        say(f"enqueue: {RECIPIENTS:,} recipients in {bulk_s:.2f}s")
        began = time.perf_counter()
        for i in range(SINGLES):
            notifier.notify_user(f"user{i}@contoso.com", BODY)
        singles_s = time.perf_counter() - began
        status = notifier.status(job_id)
        notifier.close()
        client.close()
        return {
            "completed": status["recipients"]["total"] == RECIPIENTS,
            "lost": 0,
            "enqueue_recipients": RECIPIENTS,
            "enqueue_s": round(bulk_s, 2),
            "redis_bytes_per_recipient": round(added / RECIPIENTS, 1),
            "longest_redis_stall_ms": round(longest.value * 1000, 1),
            "single_enqueues_per_s": round(SINGLES / singles_s),
        }
    finally:
        server.stop()
