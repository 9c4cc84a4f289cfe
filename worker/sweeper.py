"""Finds jobs whose messages were lost and dispatches them again, so that nothing is ever lost.

kombu's Redis transport can lose a message: a worker killed between popping it from the queue and
recording it as unacknowledged takes it along. The job records know better than the broker what is left
to send. When nothing is queued, a job with requests pending that has not moved for longer than a dead
worker's messages and leases take to come back is dispatched again. Copies are harmless: each request
ends once, and a request waiting for Retry-After keeps waiting whichever copy runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from producers import keys
from worker.jobs import LEASE_SECONDS, JobStore

log = logging.getLogger(__name__)

#: Added to the visibility timeout and the lease before a quiet job counts as stalled.
STALL_MARGIN = 30.0


def stall_after(visibility_timeout: float) -> float:
    """Seconds without progress after which a pending job has lost a message."""
    return visibility_timeout + LEASE_SECONDS + STALL_MARGIN


def sweep(client: redis.Redis, jobs: JobStore, stall: float, redispatch: Callable[[str], None]) -> list[str]:
    """One round: the stalled jobs it dispatched again (none while anything is queued or paused)."""
    if client.llen(keys.QUEUE) or client.exists(keys.paused()):
        return []
    if not client.set(keys.sweep_lock(), "1", nx=True, ex=max(int(stall / 4), 1)):
        return []  # another worker swept this round
    stalled = jobs.stalled(time.time() - stall)
    for job_id in stalled:
        log.warning("job %s made no progress for %.0fs: dispatching it again", job_id, stall)
        jobs.mark_started(job_id)
        redispatch(job_id)
    return stalled


class Sweeper(threading.Thread):
    """Runs `sweep` every quarter of the stall time in a worker, until the worker stops."""

    def __init__(self, client: redis.Redis, stall: float, redispatch: Callable[[str], None]) -> None:
        super().__init__(name="teams-notify-sweeper", daemon=True)
        self._client = client
        self._jobs = JobStore(client)
        self._stall = stall
        self._redispatch = redispatch
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(max(self._stall / 4, 1.0)):
            try:
                sweep(self._client, self._jobs, self._stall, self._redispatch)
            except redis.RedisError as exc:
                log.warning("sweep skipped: %s", exc)

    def stop(self) -> None:
        """Ends the loop."""
        self._stop.set()
