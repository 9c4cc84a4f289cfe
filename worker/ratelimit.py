"""Fleet-wide pacing at Graph's published limits, shared by every worker through Redis.

Each Graph request needs a permit from every limit it falls under (bulk: per tenant and per app; single:
per tenant, per app, per team or chat, per user). A GCRA over all of them in one Lua script keeps the
fleet at the limits without bursting past them: requests are spaced one emission interval apart, so Graph
answers 429 only when someone else shares the app's quota. `TEAMS_NOTIFY_RATE_LIMITS=off` turns it off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis

from producers import keys
from worker.jobs import Job

#: Added to every interval: network jitter must not bring two paced requests closer than Graph's window allows.
PACING_MARGIN = 0.05

_ACQUIRE = """
-- KEYS: one per limit; ARGV: interval in microseconds per key. Returns 0, or microseconds to wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  if tat - now > wait then wait = tat - now end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i])
  redis.call('SET', key, tats[i] + interval, 'PX', math.ceil(interval / 1000) + 1000)
end
return 0
"""


@dataclass(frozen=True)
class Limit:
    """One limit a request falls under: its Redis key and the seconds between two requests."""

    key: str
    interval: float


class RateLimiter:
    """Hands out permits at Graph's published rates, for the whole fleet at once."""

    def __init__(self, client: redis.Redis, limits: Mapping[str, float], app_id: str) -> None:
        self._acquire = client.register_script(_ACQUIRE)
        self._limits = limits
        self._app = app_id

    def limits_for(self, job: Job, tenant: str, user_id: str | None) -> list[Limit]:
        """The limits one request of this job falls under."""
        per_second = self._limits
        prefix = f"{keys.PREFIX}:rate:{self._app}"
        if job.bulk:
            found = [
                Limit(f"{prefix}:bulk:{tenant}", 1 / per_second["bulk_tenant"]),
                Limit(f"{prefix}:bulk", 1 / per_second["bulk_app"]),
            ]
        else:
            found = [
                Limit(f"{prefix}:single:{tenant}", 1 / per_second["single_tenant"]),
                Limit(f"{prefix}:single", 1 / per_second["single_app"]),
            ]
            if job.endpoint in ("team", "chat") and job.target:
                found.append(Limit(f"{prefix}:{job.endpoint}:{job.target.lower()}", 1 / per_second["team"]))
        if user_id:
            found.append(Limit(f"{prefix}:user:{user_id.lower()}", 60 / per_second["user_minute"]))
        return found

    def acquire(self, limits: list[Limit]) -> float:
        """Takes a permit from every limit at once: 0.0, or the seconds to wait before asking again."""
        if not limits:
            return 0.0
        intervals = [int((lim.interval + PACING_MARGIN) * 1e6) for lim in limits]
        wait = self._acquire(keys=[lim.key for lim in limits], args=intervals)
        return int(wait) / 1e6
