"""The producer side of `bench --scenario enqueue`, in a process of its own (`python -m worker.bench.producer
REDIS_URL`) so that its peak RSS is a producer's alone: it imports `producers` and redis, as a backend app does.

Enqueues a bulk job of a million GUID recipients, timing it, while another process pings Redis every
millisecond (the longest round trip is how long Redis kept other clients waiting); then times single
`notify_user` enqueues; prints its figures as one JSON object.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

import redis

from producers import Notifier
from worker.bench.process import vmhwm_bytes

#: Recipients of the big job, and single sends timed.
RECIPIENTS = 1_000_000
SINGLES = 3_000
BODY = {
    "topic": {"source": "entityUrl", "value": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/bench"},
    "activityType": "pendingFinanceApprovalRequests",
    "previewText": {"content": "Internal spending team has a pending finance approval requests"},
}
MB = 1024 * 1024


def peak_rss_mb() -> float:
    """This process's peak resident memory so far: VmHWM where there is /proc (Linux's getrusage would give
    the parent's RSS at the fork, carried across exec), else getrusage (bytes on macOS)."""
    try:
        hwm = vmhwm_bytes(Path("/proc/self/status").read_text())
    except OSError:
        hwm = None
    if hwm is not None:
        return round(hwm / MB, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (MB if sys.platform == "darwin" else 1024), 1)


def _ping(url: str, stop: Any, longest: Any) -> None:
    """In its own process: the longest PING round trip until told to stop."""
    client = redis.Redis.from_url(url)
    while not stop.is_set():
        began = time.perf_counter()
        client.ping()
        longest.value = max(longest.value, time.perf_counter() - began)
        time.sleep(0.001)


def measure(url: str) -> dict[str, Any]:
    """The producer's figures against the Redis at `url`."""
    client = redis.Redis.from_url(url)
    notifier = Notifier(url)
    started_mb = peak_rss_mb()
    recipients = [
        {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": f"{i:08x}-4e49-4661-87f2-{i:012x}"}
        for i in range(RECIPIENTS)
    ]
    listed_mb = peak_rss_mb()
    before = int(client.info("memory")["used_memory"])
    stop, longest = multiprocessing.Event(), multiprocessing.Value("d", 0.0)
    pinger = multiprocessing.Process(target=_ping, args=(url, stop, longest), daemon=True)
    pinger.start()
    time.sleep(0.2)
    began = time.perf_counter()
    job_id = notifier.notify_recipients({**BODY, "recipients": recipients})
    bulk_s = time.perf_counter() - began
    stop.set()
    pinger.join(10)
    added = int(client.info("memory")["used_memory"]) - before
    peak_mb = peak_rss_mb()
    began = time.perf_counter()
    for i in range(SINGLES):
        notifier.notify_user(f"user{i}@contoso.com", BODY)
    singles_s = time.perf_counter() - began
    total = notifier.status(job_id)["recipients"]["total"]
    notifier.close()
    client.close()
    return {
        "completed": total == RECIPIENTS,
        "lost": 0,
        "enqueue_recipients": RECIPIENTS,
        "enqueue_s": round(bulk_s, 2),
        "redis_bytes_per_recipient": round(added / RECIPIENTS, 1),
        "longest_redis_stall_ms": round(longest.value * 1000, 1),
        "single_enqueues_per_s": round(SINGLES / singles_s),
        "producer_start_rss_mb": started_mb,
        "producer_recipients_listed_rss_mb": listed_mb,
        "producer_peak_rss_mb": peak_mb,
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
