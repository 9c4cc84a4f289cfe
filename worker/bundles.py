"""What a bundle checks between its sends, and how the leader makes room for a single send.

With pacing off the leader hands a lane's ready requests out several to a message (a bundle), which one task
sends one after another, holding its worker slot meanwhile. Before each send after the first, the task asks
Redis whether it should stop and give the rest back to their lane, in the same round trip that reads the
request's body (`queue_check`, then `reason` over the replies):

- the fleet was paused, or the request's job cancelled (the pause keeps them; a claim cancels them);
- the leader is making room: a single send is ready and every slot is busy with bulk bundles. The leader sets
  `keys.make_room()` to how many slots it wants freed, each bundle that takes one decrements it, and the
  single send, handed out before any bulk lane, gets the slot freed. The request lasts `ROOM_SECONDS`
  and is not renewed while it stands (so bundles stopping meanwhile are not counted twice). So a single send
  waits for at most one bulk request in progress, however slow Graph is, and bulk work pays nothing when
  no single send waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from producers import keys

#: How long a request for room stands; the leader asks again after it if a single send still waits.
ROOM_SECONDS = 0.25
#: Why a bundle stopped early.
STOPPED = "paused or cancelled"
MAKING_ROOM = "making room for a single send"
#: Replies `queue_check` adds to a pipeline.
CHECKS = 3


class Bundles:
    """The signals between the scheduler's leader and the tasks sending bundles, in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def stop_reason(self, job_id: str) -> str | None:
        """Why a bundle should stop before its next request of job `job_id`, if it should: the fleet paused
        or the job cancelled, or a slot wanted for a single send (which this call then takes on)."""
        pipe = self._redis.pipeline(transaction=False)
        self.queue_check(pipe, job_id)
        return self.reason(pipe.execute())

    @staticmethod
    def queue_check(pipe: redis.client.Pipeline, job_id: str) -> None:
        """Adds the `CHECKS` reads of `stop_reason` to a pipeline (the caller's, for one round trip)."""
        pipe.exists(keys.paused())
        pipe.hget(keys.job(job_id), "cancelled")
        pipe.get(keys.make_room())

    def reason(self, replies: Sequence[Any]) -> str | None:
        """`stop_reason` from the replies to `queue_check`; taking a request for room up is one more call."""
        paused, cancelled, room = replies
        if paused or cancelled == "1":
            return STOPPED
        if room and int(room) > 0 and int(self._redis.decr(keys.make_room())) >= 0:
            return MAKING_ROOM
        return None

    def make_room(self, slots: int) -> None:
        """Asks running bundles to free `slots` worker slots unless a request stands already (0: withdraws it)."""
        if slots > 0:
            self._redis.set(keys.make_room(), slots, px=int(ROOM_SECONDS * 1000), nx=True)
        else:
            self._redis.delete(keys.make_room())

    def room_wanted(self) -> int:
        """Slots the leader still wants freed."""
        return max(0, int(self._redis.get(keys.make_room()) or 0))
