"""Fleet-wide pacing at Graph's published limits: permits reserved in Redis before a request is handed out.

Each Graph request needs a permit from every limit it falls under (bulk: per tenant and per app; single:
per tenant, per app, per team or chat, per user). A GCRA over all of them in one Lua script spaces the
fleet's requests one emission interval apart, so Graph answers 429 only when someone else shares the app's
quota. The scheduler's leader reserves the permit when it hands a request to a worker, so no worker slot
ever waits for one. `TEAMS_NOTIFY_RATE_LIMITS=off` turns pacing off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis

from producers import keys
from worker.jobs import Job

#: Each interval is stretched by this share: the jitter between a permit's slot and the request reaching
#: Graph must not bring N+1 requests into the window where Graph allows N. 3% tolerates 30 ms in a 1 s window
#: (the worker sends at its slot plus a fixed allowance, so most of the pipeline's jitter is absorbed).
PACING_MARGIN = 0.03

#: `take_permits(keys, intervals, lookahead)`: with `intervals` in microseconds, one per key, reserves the
#: earliest slot (epoch microseconds) at which every limit has a permit, if it is at most `lookahead`
#: microseconds away: returns {0, 0, slot}, each limit's next permit then one interval after the slot. Else
#: nothing is taken and it returns {microseconds until the slot is within the lookahead, index of the limit
#: that sets it, 0}. Shared with the scheduler's hand-out script, which reserves and hands in one step.
TAKE_PERMITS = """
local function take_permits(limit_keys, intervals, lookahead)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local slot, worst = now, 0
  for i, key in ipairs(limit_keys) do
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat > slot then slot, worst = tat, i end
  end
  if slot - now > lookahead then return {slot - now - lookahead, worst, 0} end
  for i, key in ipairs(limit_keys) do
    local interval = tonumber(intervals[i])
    redis.call('SET', key, slot + interval, 'PX', math.ceil((slot + interval - now) / 1000) + 1000)
  end
  return {0, 0, slot}
end
"""

_ACQUIRE = TAKE_PERMITS + "return take_permits(KEYS, ARGV, 0)\n"


@dataclass(frozen=True)
class Limit:
    """One limit a request falls under: its Redis key, the seconds between two requests, and whether it is
    the limit of one target (a user, team or chat) rather than of a whole lane."""

    key: str
    interval: float
    target: bool = False


@dataclass(frozen=True)
class Permit:
    """A permit (`wait == 0`) for the slot `at` (epoch seconds, Redis' clock; 0 when not reserved ahead),
    or how long until one and the limit that holds it back."""

    wait: float
    blocked_by: Limit | None = None
    at: float = 0.0


class RateLimiter:
    """Hands out permits at Graph's published rates, for the whole fleet at once."""

    def __init__(self, client: redis.Redis, limits: Mapping[str, float], app_id: str) -> None:
        self._acquire = client.register_script(_ACQUIRE)
        self._limits = limits
        self._app = app_id

    def lane_limit(self, bulk: bool) -> float:
        """Requests a second one tenant's lane of this class may send."""
        return self._limits["bulk_tenant" if bulk else "single_tenant"]

    def limits_for(self, job: Job, tenant: str, user_id: str | None, pace: float = 1.0) -> list[Limit]:
        """The limits one request of this job falls under; `pace` (0.5 to 1) slows the tenant's limit."""
        per_second = self._limits
        prefix = f"{keys.PREFIX}:rate:{self._app}"
        if job.bulk:
            found = [
                Limit(f"{prefix}:bulk:{tenant}", 1 / (per_second["bulk_tenant"] * pace)),
                Limit(f"{prefix}:bulk", 1 / per_second["bulk_app"]),
            ]
        else:
            found = [
                Limit(f"{prefix}:single:{tenant}", 1 / (per_second["single_tenant"] * pace)),
                Limit(f"{prefix}:single", 1 / per_second["single_app"]),
            ]
            if job.endpoint in ("team", "chat") and job.target:
                team = Limit(f"{prefix}:{job.endpoint}:{job.target.lower()}", 1 / per_second["team"], target=True)
                found.append(team)
        if user_id:
            found.append(Limit(f"{prefix}:user:{user_id.lower()}", 60 / per_second["user_minute"], target=True))
        return found

    def acquire(self, limits: list[Limit]) -> Permit:
        """Takes a permit from every limit at once, or none and says how long to wait and for which."""
        if not limits:
            return Permit(0.0)
        wait, worst, _ = self._acquire(keys=[lim.key for lim in limits], args=intervals(limits))
        return permit(limits, int(wait), int(worst))


def intervals(limits: list[Limit]) -> list[int]:
    """The microseconds between two permits of each limit, stretched by the pacing margin."""
    return [int(lim.interval * (1 + PACING_MARGIN) * 1e6) for lim in limits]


def permit(limits: list[Limit], wait: int, worst: int, slot: int = 0) -> Permit:
    """What `take_permits` answered, as a Permit."""
    return Permit(0.0, at=slot / 1e6) if wait <= 0 else Permit(wait / 1e6, limits[worst - 1] if worst else None)
