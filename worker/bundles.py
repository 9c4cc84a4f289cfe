"""What a bundle checks between its sends, and how the leader makes room for a single send.

With pacing off the leader hands a lane's ready requests out several to a message (a bundle), which one task
sends one after another, holding its worker slot meanwhile. Before each send, the first included, the task
asks Redis whether it should stop and give the rest back to their lane, in the same round trip that reads
the request's body (`queue_check`, then `reason` over the replies):

- the fleet was paused, or the request's job cancelled (the pause keeps them; a claim cancels them);
- (bulk bundles only) the leader is making room: a single send is ready and every slot is busy with bulk
  bundles, or one waits behind bulk bundles queued in the broker. The leader sets
  `keys.make_room()` to how many slots it wants freed, each bundle that takes one decrements it, and the
  single send, handed out before any bulk lane, gets the slot freed. The request lasts `ROOM_SECONDS`
  and is not renewed while it stands (so bundles stopping meanwhile are not counted twice). A bundle takes a
  slot up with `_TAKE_ROOM`, atomically: a plain DECR after the request expired would create the key anew,
  negative and with no expiry, and the leader's next request (`SET NX`) could not replace it. So a single send
  waits for at most one bulk request in progress, however slow Graph is (a bulk bundle queued ahead of it
  gives its slot up before its first send), and bulk work pays nothing when no single send waits.
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

#: KEYS: the make-room key. Takes one slot of the standing request for room: 1 if there was one to take, else
#: 0. It never creates the key, so the request's expiry always stands.
_TAKE_ROOM = """
local wanted = tonumber(redis.call('GET', KEYS[1]) or '0')
if wanted > 0 then
  redis.call('DECR', KEYS[1])
  return 1
end
return 0
"""


class Bundles:
    """The signals between the scheduler's leader and the tasks sending bundles, in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._take_room = client.register_script(_TAKE_ROOM)

    @staticmethod
    def queue_check(pipe: redis.client.Pipeline, job_id: str) -> None:
        """Adds to the caller's pipeline the `CHECKS` reads that tell whether a bundle should stop before
        its next request of job `job_id` (`reason` reads their replies)."""
        pipe.exists(keys.paused())
        pipe.hget(keys.job(job_id), "cancelled")
        pipe.get(keys.make_room())

    def reason(self, replies: Sequence[Any], take_room: bool = True) -> str | None:
        """Why the bundle should stop, from the replies to `queue_check`: the fleet paused or the job
        cancelled, or a slot wanted for a single send, which this call then takes up (one more call; not
        when `take_room` is false: a single send's bundle keeps its slot)."""
        paused, cancelled, room = replies
        if paused or cancelled == "1":
            return STOPPED
        if take_room and room and int(room) > 0 and self._take_room(keys=[keys.make_room()]) == 1:
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
