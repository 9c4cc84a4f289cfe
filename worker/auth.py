"""Access tokens for Graph, one per tenant for the whole fleet: shared through Redis, refreshed by one worker.

`token(tenant, min_lifetime, required=...)` answers from this process's memory, else from the fleet's cache
in Redis (`worker.tokencache`), else from Entra (`worker.entra`, MSAL), which one thread of one worker asks
at a time (single flight): the other threads of that worker wait for it, the other workers for the token it
stores. A token nearing the end of its use (for a bulk send, the 45 minutes Graph wants plus a margin) is
refreshed ahead of need in the background, so a send rarely waits for Entra. No lock is held across a
network call, and a send waits at most `FOLLOW_WAIT` for someone else's refresh (`worker.tokenrefresh`): a
hung Entra holds one thread per worker and tenant, never another tenant's sends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from producers.connection import connect
from worker import observe
from worker.config import Settings
from worker.entra import EntraClient
from worker.errors import AuthError, EntraUnavailable, TokenLifetimeTooShort
from worker.tokencache import AccessToken, SharedTokenCache
from worker.tokenrefresh import FOLLOW_WAIT, Fetcher, FleetRefresh, TroubleLog, copy

__all__ = ["AccessToken", "TokenProvider"]

log = logging.getLogger(__name__)

#: Every token handed out has at least this long left (a send takes seconds; MSAL's own margin is 5 minutes).
MIN_LIFETIME = 300.0
#: A token is refreshed ahead of need once what is left of its use is under this share of it, or this long.
REFRESH_AHEAD_SHARE = 0.2
REFRESH_AHEAD_MAX = 300.0
#: A token Entra issued this recently tells how long the tenant's tokens live (its policy may change later).
POLICY_MEMORY = 300.0


class _Flight:
    """One refresh in progress in this process; whoever waits for it gets its outcome."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.done = threading.Event()
        self.token: AccessToken | None = None
        self.error: AuthError | None = None


class TokenProvider:
    """Client-credential tokens for Graph, per tenant, shared by the fleet."""

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis | None = None,
        *,
        fetcher: Fetcher | None = None,
        follow_wait: float = FOLLOW_WAIT,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credential = settings.credential()
        self._authority_host = settings.authority_host
        fetcher = fetcher or EntraClient(
            self._credential,
            settings.authority_host,
            settings.graph_scope,
            instance_discovery=not settings.custom_authority,
        )
        self._own_redis = redis_client is None
        self._redis = redis_client if redis_client is not None else connect(settings.redis_url)
        context = f"{self._credential.client_id} {settings.authority_host} {settings.graph_scope}"
        self._cache = SharedTokenCache(self._redis, self._credential.key_material(), context, clock)
        self._clock, self._monotonic, self._follow_wait = clock, monotonic, follow_wait
        self._trouble = TroubleLog(monotonic)
        self._refresher = FleetRefresh(
            self._cache,
            fetcher,
            self._credential.describe(),
            self._trouble,
            follow_wait=follow_wait,
            clock=clock,
            monotonic=monotonic,
            sleep=sleep,
        )
        self._local: dict[str, AccessToken] = {}
        self._flights: dict[str, _Flight] = {}
        self._ahead_started: dict[str, float] = {}
        self._lock = threading.Lock()  # guards the dicts above, never held across Redis or Entra
        self._handed = threading.local()

    def __repr__(self) -> str:
        return (
            f"TokenProvider(client_id={self._credential.client_id!r}, authority_host={self._authority_host!r}, "
            f"credential={self._credential.describe()!r})"
        )

    def token(self, tenant_id: str, min_lifetime: float = 0, required: float | None = None) -> AccessToken:
        """A token with `min_lifetime` seconds left, else a fresh one, which must have `required` left at least.

        Raises:
            TokenLifetimeTooShort: the tenant's tokens live shorter than `required` (permanent).
            AuthError: no token now (`transient`: Entra is away or refuses the credential), or never.
        """
        tenant = tenant_id.strip().lower()
        need = max(float(min_lifetime), MIN_LIFETIME)
        floor = need if required is None else min(need, max(float(required), MIN_LIFETIME))
        asked, began = self._clock(), self._monotonic()
        refreshed = False
        for _ in range(3):
            token, source = self._known(tenant, need)
            now = self._clock()
            if token is not None and token.lifetime_at(now) >= need:
                self._ahead(tenant, token, need)
                return self._hand(tenant, token, "refreshed" if refreshed else source, began)
            fresh = token is not None and token.issued_at >= asked - self._follow_wait
            if token is not None and fresh and token.lifetime_at(now) >= floor:
                return self._hand(tenant, token, "refreshed", began)
            self._check_policy(tenant, token, floor, now)
            self._refresh(tenant, need, asked)
            refreshed = True
        raise EntraUnavailable(f"no token with {need / 60:.0f} minutes left for tenant {tenant} after three refreshes")

    def invalidate(self, tenant_id: str) -> None:
        """Drops the token this thread last got for the tenant (Graph refused it), unless a newer one replaced it."""
        tenant = tenant_id.strip().lower()
        handed: AccessToken | None = getattr(self._handed, "tokens", {}).pop(tenant, None)
        if handed is None:
            return
        with self._lock:
            local = self._local.get(tenant)
            if local is not None and local.value == handed.value:
                del self._local[tenant]
        self._cache.discard(tenant, handed)

    def close(self) -> None:
        """Closes the Redis pool if this provider opened it."""
        if self._own_redis:
            self._redis.close()

    def _known(self, tenant: str, need: float) -> tuple[AccessToken | None, str]:
        """The best token known: this process's, unless it is near its end and the fleet's is newer."""
        now = self._clock()
        with self._lock:
            local = self._local.get(tenant)
        if local is not None and local.lifetime_at(now) - need >= _ahead_of(local, need):
            return local, "memory"
        shared = self._cache.get(tenant)
        if shared is not None and (local is None or shared.expires_at > local.expires_at):
            self._remember(tenant, shared)
            return shared, "redis"
        return local, "memory"

    def _remember(self, tenant: str, token: AccessToken) -> None:
        with self._lock:
            current = self._local.get(tenant)
            if current is None or token.expires_at > current.expires_at:
                self._local[tenant] = token

    def _hand(self, tenant: str, token: AccessToken, source: str, began: float) -> AccessToken:
        """Hands a token to a send, remembering it for `invalidate`."""
        if not hasattr(self._handed, "tokens"):
            self._handed.tokens = {}
        self._handed.tokens[tenant] = token
        observe.TOKENS_SERVED.labels(source).inc()
        if source == "refreshed":
            observe.TOKEN_WAIT.observe(self._monotonic() - began)
        return token

    def _check_policy(self, tenant: str, token: AccessToken | None, floor: float, now: float) -> None:
        """Raises TokenLifetimeTooShort when Entra lately issued the tenant a token too short-lived for `floor`."""
        if token is None or token.issued_at < now - POLICY_MEMORY or token.whole_lifetime >= floor:
            return
        error = TokenLifetimeTooShort(
            f"Entra issues tokens of {token.whole_lifetime / 60:.0f} minutes for tenant {tenant} (a token-lifetime "
            f"policy?), and this send needs {floor / 60:.0f} minutes left: Graph refuses a bulk send with a token "
            "under 45 minutes (412). Give the tenant tokens of an hour or more."
        )
        self._trouble.report(tenant, error)
        raise error

    def _refresh(self, tenant: str, need: float, asked: float) -> None:
        """Waits for the tenant's refresh in this process, leading it if none is in flight; raises its error."""
        with self._lock:
            flight = self._flights.get(tenant)
            leader = flight is None
            if flight is None:
                flight = self._flights[tenant] = _Flight(self._monotonic())
        if leader:
            now = self._clock

            def accept(token: AccessToken) -> bool:
                return token.lifetime_at(now()) >= need or token.issued_at >= asked - self._follow_wait

            self._lead(tenant, flight, accept, background=False)
        else:
            left = self._follow_wait - (self._monotonic() - flight.started)
            if left <= 0 or not flight.done.wait(left):
                raise EntraUnavailable(
                    f"Entra has not issued a token for tenant {tenant} for {self._follow_wait:g}s; the send waits"
                )
        if flight.error is not None:
            raise copy(flight.error)

    def _ahead(self, tenant: str, token: AccessToken, need: float) -> None:
        """Refreshes in the background a token whose use is nearly over, unless a refresh is under way."""
        if token.lifetime_at(self._clock()) - need >= _ahead_of(token, need):
            return
        with self._lock:
            if tenant in self._flights or self._monotonic() - self._ahead_started.get(tenant, -1e9) < 1.0:
                return
            self._ahead_started[tenant] = self._monotonic()
            flight = self._flights[tenant] = _Flight(self._monotonic())
        expires = token.expires_at
        threading.Thread(
            target=self._lead,
            args=(tenant, flight, lambda new: new.expires_at > expires + 1, True),
            name=f"token-refresh-{tenant}",
            daemon=True,
        ).start()

    def _lead(self, tenant: str, flight: _Flight, accept: Callable[[AccessToken], bool], background: bool) -> None:
        """Makes this process's refresh and hands its outcome to those waiting for it."""
        try:
            flight.token = self._refresher.run(tenant, accept, background)
        except AuthError as exc:
            flight.error = exc
        except Exception as exc:  # whatever happens, the waiters must not hang; Redis errors are handled below
            log.exception("token refresh for tenant %s failed", tenant)
            flight.error = EntraUnavailable(f"token refresh for tenant {tenant} failed: {type(exc).__name__}")
        finally:
            if flight.token is not None:
                self._remember(tenant, flight.token)
            with self._lock:
                if self._flights.get(tenant) is flight:
                    del self._flights[tenant]
            flight.done.set()


def _ahead_of(token: AccessToken, need: float) -> float:
    """How long before the end of its use (lifetime above `need`) a token is refreshed in the background."""
    return min(REFRESH_AHEAD_MAX, REFRESH_AHEAD_SHARE * max(token.whole_lifetime - need, 0.0))
