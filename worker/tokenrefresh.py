"""One refresh for the whole fleet: who asks Entra (the Redis lock), who waits for the token, refusals shared.

`FleetRefresh.run` is what one thread of a worker does when its process needs a new token for a tenant: take
the token another worker has just stored, or take the tenant's lock and ask Entra, or wait (briefly) for the
worker holding the lock. Entra's refusals are stored for the fleet, which then waits 2, 4, 8 ... up to 60 s
before asking again, so a wrong secret costs Entra a request every minute, not one per send.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from worker import observe
from worker.errors import AuthError, CredentialsRefused, EntraUnavailable
from worker.tokencache import AccessToken, Refusal, SharedTokenCache

log = logging.getLogger("worker.auth")  # one logger for every line about tokens

#: The longest a send waits for a refresh another thread or worker is making; after that it is deferred.
FOLLOW_WAIT = 5.0
#: How often a worker waiting for another worker's refresh looks for the new token.
POLL_INTERVAL = 0.05
#: After a refusal the fleet asks Entra again only after this wait, doubled per refusal in a row, up to the max.
REFUSAL_WAIT = 2.0
REFUSAL_WAIT_MAX = 60.0
#: A worker logs the same trouble with a tenant's token at most this often.
LOG_EVERY = 10.0


class Fetcher(Protocol):
    """Where new tokens come from: Entra (`worker.entra.EntraClient`), or a fake in tests."""

    def fetch(self, tenant: str) -> tuple[str, float]: ...


class TroubleLog:
    """One clear line about a tenant's token trouble, at most every LOG_EVERY seconds per tenant and kind."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._logged: dict[tuple[str, str, int | None], float] = {}
        self._lock = threading.Lock()

    def report(self, tenant: str, error: AuthError) -> None:
        """Logs the error, unless the same was logged lately."""
        key = (tenant, type(error).__name__, error.code)
        now = self._monotonic()
        with self._lock:
            if now - self._logged.get(key, -1e9) < LOG_EVERY:
                return
            self._logged[key] = now
        text = str(error).rstrip(".")
        if isinstance(error, CredentialsRefused):
            log.error(
                "%s. Sends to tenant %s wait (nothing is dead-lettered) until the credential is fixed and the "
                "workers restarted",
                text,
                tenant,
            )
        elif error.transient:
            log.warning("%s; sends to tenant %s wait and retry", text, tenant)
        else:
            log.error("%s", text)


class FleetRefresh:
    """Gets a tenant a new token once for the whole fleet."""

    def __init__(
        self,
        cache: SharedTokenCache,
        fetcher: Fetcher,
        credential: str,
        trouble: TroubleLog,
        *,
        follow_wait: float = FOLLOW_WAIT,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._cache, self._fetcher, self._credential, self._trouble = cache, fetcher, credential, trouble
        self.follow_wait = follow_wait
        self._clock, self._monotonic, self._sleep = clock, monotonic, sleep

    def run(self, tenant: str, accept: Callable[[AccessToken], bool], background: bool) -> AccessToken | None:
        """The token another worker just stored, or one from Entra with the fleet's lock held.

        `accept` says whether a stored token will do. In the `background` (a refresh ahead of need) nothing
        is waited for: None when another worker is refreshing or Entra refuses.

        Raises:
            AuthError: Entra refused (now or lately), or another worker's refresh takes too long (transient).
        """
        deadline = self._monotonic() + self.follow_wait
        while True:
            shared = self._cache.get(tenant)
            if shared is not None and accept(shared):
                return shared
            refusal = self._cache.refusal(tenant)
            if refusal is not None and refusal.until > self._clock():
                if background:
                    return None
                self._trouble.report(tenant, refusal.error)
                raise copy(refusal.error)
            lock = self._cache.lock(tenant)
            if lock is not None:
                try:
                    shared = self._cache.get(tenant)
                    if shared is not None and accept(shared):
                        return shared
                    return self._ask_entra(tenant, refusal)
                finally:
                    self._cache.unlock(tenant, lock)
            if background:
                return None
            age = self._cache.lock_age(tenant) or 0.0
            if self._monotonic() >= deadline or age >= self.follow_wait:
                raise EntraUnavailable(
                    f"another worker has been waiting {max(age, self.follow_wait):.0f}s for Entra to issue a token "
                    f"for tenant {tenant}; the send waits"
                )
            self._sleep(POLL_INTERVAL)

    def _ask_entra(self, tenant: str, previous: Refusal | None) -> AccessToken:
        """One token request to Entra; a refusal is shared with the fleet, which waits before asking again."""
        started = self._clock()
        try:
            value, expires_in = self._fetcher.fetch(tenant)
        except AuthError as exc:
            failures = (previous.failures if previous is not None else 0) + 1
            wait = min(REFUSAL_WAIT_MAX, REFUSAL_WAIT * 2 ** min(failures - 1, 10))
            self._cache.refuse(tenant, exc, wait, failures)
            observe.TOKEN_REQUESTS.labels(tenant, exc.reason or "refused").inc()
            self._trouble.report(tenant, exc)
            raise
        token = self._cache.put(tenant, AccessToken(value, started + expires_in, started))
        if previous is not None:
            self._cache.forgive(tenant)
        observe.TOKEN_REQUESTS.labels(tenant, "issued").inc()
        log.info("token for tenant %s from Entra, with the %s: valid %.0fs", tenant, self._credential, expires_in)
        return token


def copy(error: AuthError) -> AuthError:
    """The same error as a new exception, so threads raising it do not share one traceback."""
    return type(error)(str(error), transient=error.transient, reason=error.reason, code=error.code)
