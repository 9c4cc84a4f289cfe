"""The heartbeat of a worker process: it renews the leases of the requests its tasks are sending.

Leases are short (`lanes.LEASE_SECONDS`) so that a crashed worker's requests come back within seconds; a
send that runs longer keeps its lease because this thread renews it every `lanes.RENEW_EVERY` seconds. A
process that loses Redis keeps beating: the renewals that fail are retried on the next beat.
"""

from __future__ import annotations

import logging
import threading

import redis

from worker.lanes import RENEW_EVERY, LaneStore

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Renews the leases held by this process's tasks until stopped."""

    def __init__(self, lanes: LaneStore, every: float = RENEW_EVERY) -> None:
        super().__init__(name="teams-notify-heartbeat", daemon=True)
        self._lanes = lanes
        self._every = every
        self._held: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def hold(self, lane: str, ref: str, token: str) -> None:
        """Keeps renewing this lease until `release`."""
        with self._lock:
            self._held[ref] = (lane, token)

    def release(self, ref: str) -> None:
        """Stops renewing a lease (the request ended, was deferred, or the task gave up)."""
        with self._lock:
            self._held.pop(ref, None)

    def held(self) -> list[tuple[str, str, str]]:
        """The leases being renewed: (lane, ref, token)."""
        with self._lock:
            return [(lane, ref, token) for ref, (lane, token) in self._held.items()]

    def beat(self) -> int:
        """Renews every lease held now; returns how many are still this process's."""
        held = self.held()
        return self._lanes.renew_all(held) if held else 0

    def run(self) -> None:
        while not self._stopping.wait(self._every):
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("leases not renewed (%s); trying again in %.0fs", exc, self._every)

    def stop(self) -> None:
        """Ends the loop."""
        self._stopping.set()
