"""The workers alive and their task slots, as each announces itself in Redis (read by the scheduler)."""

from __future__ import annotations

import json
from typing import cast

import redis

from producers import keys

#: A worker's announcement of its slots lasts this long unless renewed.
FLEET_TTL = 15.0


class Fleet:
    """The workers alive and their slots, each announced in Redis with an expiry."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def announce(self, node: str, slots: int) -> None:
        """This worker is alive with `slots` task slots, for the next `FLEET_TTL` seconds (by Redis' clock)."""
        expires = self._now() + FLEET_TTL
        self._redis.hset(keys.fleet(), node, json.dumps({"slots": slots, "expires": expires}))

    def _now(self) -> float:
        seconds, micros = self._redis.time()
        return float(seconds) + micros / 1e6

    def leave(self, node: str) -> None:
        """This worker stops."""
        self._redis.hdel(keys.fleet(), node)

    def slots(self) -> dict[str, int]:
        """Live workers and their slots."""
        return self.alive(cast(dict[str, str], self._redis.hgetall(keys.fleet())), self._now())

    def alive(self, announced: dict[str, str], now: float) -> dict[str, int]:
        """The workers of these announcements alive at `now` (Redis' time), with their slots; the expired
        ones are dropped from Redis."""
        alive: dict[str, int] = {}
        for node, raw in announced.items():
            entry = json.loads(raw)
            if entry["expires"] < now:
                self._redis.hdel(keys.fleet(), node)
            else:
                alive[node] = int(entry["slots"])
        return alive
