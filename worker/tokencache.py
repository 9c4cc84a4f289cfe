"""The fleet's token cache in Redis: one encrypted token per tenant, the refresh lock, and Entra's last refusal.

Every worker with the same app, credential, authority and scope shares a *slot* (a hash of all four, so a
rotated credential or another cloud never reads or overwrites another's entries). Per tenant and slot:

    teams-notify:token:{tenant}:{slot}          the access token, its expiry and issue time, AES-256-GCM
                                                encrypted; the key expires with the token
    teams-notify:token-lock:{tenant}:{slot}     held (a few seconds) by the one worker asking Entra right now
    teams-notify:token-refusal:{tenant}:{slot}  Entra's last refusal (no secret in it) and until when the fleet
                                                waits before asking again

The encryption key is derived (HKDF-SHA256) from the client secret or the certificate's private key, which
Redis never holds: what Redis stores cannot be read, or moved to another tenant's key (the key's name is
authenticated with it), without the credential. Redis being away costs coordination, not tokens: reads miss,
the lock is taken locally, and each worker asks Entra for itself until Redis is back.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from producers import keys
from worker import errors
from worker.errors import AuthError

log = logging.getLogger(__name__)

#: How long the refresh lock is held at most: past Entra's timeouts, so a dead holder frees it soon.
LOCK_SECONDS = 30.0
#: A refusal is remembered (for the growing backoff) this long after its wait has ended.
REFUSAL_MEMORY = 300.0
_VERSION = "v1"
_SALT = b"teams-notify token cache v1"
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: What the lock call returns when Redis is away: go ahead, uncoordinated.
UNCOORDINATED = "uncoordinated"


@dataclass(frozen=True)
class AccessToken:
    """A bearer token, when it expires and when Entra issued it (epoch seconds); never shown in a repr."""

    value: str = field(repr=False)
    expires_at: float
    issued_at: float = 0.0
    #: The token as stored in Redis (encrypted), to drop it only if it is still the one stored.
    blob: str | None = field(default=None, repr=False, compare=False)

    @property
    def lifetime(self) -> float:
        """Seconds left before it expires."""
        return self.expires_at - time.time()

    def lifetime_at(self, now: float) -> float:
        """Seconds left at `now`."""
        return self.expires_at - now

    @property
    def whole_lifetime(self) -> float:
        """How long Entra made it live: what the tenant's token-lifetime policy gives."""
        return self.expires_at - self.issued_at


@dataclass(frozen=True)
class Refusal:
    """Entra's last refusal for a tenant: the error to raise, until when, and how many in a row."""

    error: AuthError
    until: float
    failures: int


class SharedTokenCache:
    """One slot of the fleet's token cache: tokens, refresh locks and refusals, per tenant."""

    def __init__(
        self, client: redis.Redis, key_material: bytes, context: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._aead = AESGCM(_derive(key_material, b"key\0" + context.encode(), 32))
        self.slot = _derive(key_material, b"slot\0" + context.encode(), 6).hex()
        self._clock = clock
        self._compare_and_delete = client.register_script(_COMPARE_AND_DELETE)
        self._warned = 0.0

    def __repr__(self) -> str:
        return f"SharedTokenCache(slot={self.slot!r})"

    def key(self, tenant: str) -> str:
        """The Redis key of a tenant's token."""
        return f"{keys.PREFIX}:token:{tenant}:{self.slot}"

    def get(self, tenant: str) -> AccessToken | None:
        """The tenant's shared token, or None (none, expired, unreadable with this credential, or Redis away)."""
        key = self.key(tenant)
        try:
            blob = cast(str | None, self._redis.get(key))
        except redis.RedisError as exc:
            self._away(exc)
            return None
        if not blob:
            return None
        try:
            version, _, sealed = blob.partition(".")
            if version != _VERSION:
                return None
            raw = base64.urlsafe_b64decode(sealed)
            record = json.loads(self._aead.decrypt(raw[:12], raw[12:], key.encode()))
            token = AccessToken(
                str(record["access_token"]), float(record["expires_at"]), float(record["issued_at"]), blob
            )
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None  # written with another key (a credential rotated mid-way) or damaged: a miss
        return token if token.lifetime_at(self._clock()) > 0 else None

    def put(self, tenant: str, token: AccessToken) -> AccessToken:
        """Stores the tenant's token, encrypted, expiring with it; returns it with its stored form."""
        key = self.key(tenant)
        record = {"access_token": token.value, "expires_at": token.expires_at, "issued_at": token.issued_at}
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, json.dumps(record).encode(), key.encode())
        blob = f"{_VERSION}.{base64.urlsafe_b64encode(sealed).decode()}"
        ttl_ms = int(token.lifetime_at(self._clock()) * 1000)
        stored = AccessToken(token.value, token.expires_at, token.issued_at, blob)
        if ttl_ms <= 0:
            return stored
        try:
            self._redis.set(key, blob, px=ttl_ms)
        except redis.RedisError as exc:
            self._away(exc)
        return stored

    def discard(self, tenant: str, token: AccessToken) -> bool:
        """Drops the tenant's shared token if it is still `token` (not one another worker stored since)."""
        if token.blob is None:
            return False
        try:
            return bool(self._compare_and_delete(keys=[self.key(tenant)], args=[token.blob]))
        except redis.RedisError as exc:
            self._away(exc)
            return False

    def lock(self, tenant: str) -> str | None:
        """Takes the tenant's refresh lock: its token, or None when another worker holds it."""
        token = uuid.uuid4().hex
        try:
            taken = self._redis.set(self._lock_key(tenant), token, nx=True, px=int(LOCK_SECONDS * 1000))
        except redis.RedisError as exc:
            self._away(exc)
            return UNCOORDINATED
        return token if taken else None

    def unlock(self, tenant: str, token: str) -> None:
        """Releases the lock if this worker still holds it."""
        if token == UNCOORDINATED:
            return
        try:
            self._compare_and_delete(keys=[self._lock_key(tenant)], args=[token])
        except redis.RedisError as exc:
            self._away(exc)

    def lock_age(self, tenant: str) -> float | None:
        """How long another worker has held the tenant's lock (None: nobody holds it)."""
        try:
            left = int(self._redis.pttl(self._lock_key(tenant)))
        except redis.RedisError as exc:
            self._away(exc)
            return None
        return LOCK_SECONDS - left / 1000 if left > 0 else None

    def refusal(self, tenant: str) -> Refusal | None:
        """Entra's last refusal for the tenant, if the fleet still waits before asking again (or remembers it)."""
        try:
            raw = cast(str | None, self._redis.get(self._refusal_key(tenant)))
        except redis.RedisError as exc:
            self._away(exc)
            return None
        if not raw:
            return None
        try:
            record: dict[str, Any] = json.loads(raw)
            kind = getattr(errors, str(record["kind"]), AuthError)
            if not (isinstance(kind, type) and issubclass(kind, AuthError)):
                kind = AuthError
            error = kind(
                str(record["message"]),
                transient=bool(record["transient"]),
                reason=record.get("reason"),
                code=record.get("code"),
            )
            return Refusal(error, float(record["until"]), int(record["failures"]))
        except (ValueError, KeyError, TypeError):
            return None

    def refuse(self, tenant: str, error: AuthError, wait: float, failures: int) -> None:
        """Records Entra's refusal: the fleet raises it without asking Entra for `wait` seconds."""
        record = {
            "kind": type(error).__name__,
            "message": str(error),
            "transient": error.transient,
            "reason": error.reason,
            "code": error.code,
            "until": self._clock() + wait,
            "failures": failures,
        }
        try:
            self._redis.set(self._refusal_key(tenant), json.dumps(record), px=int((wait + REFUSAL_MEMORY) * 1000))
        except redis.RedisError as exc:
            self._away(exc)

    def forgive(self, tenant: str) -> None:
        """Forgets the tenant's refusals: Entra issued a token."""
        try:
            self._redis.delete(self._refusal_key(tenant))
        except redis.RedisError as exc:
            self._away(exc)

    def _lock_key(self, tenant: str) -> str:
        return f"{keys.PREFIX}:token-lock:{tenant}:{self.slot}"

    def _refusal_key(self, tenant: str) -> str:
        return f"{keys.PREFIX}:token-refusal:{tenant}:{self.slot}"

    def _away(self, exc: redis.RedisError) -> None:
        """Redis is away: carry on uncoordinated, and say so at most every 30 s."""
        now = time.monotonic()
        if now - self._warned > 30:
            self._warned = now
            log.warning("token cache: Redis unreachable (%s); workers ask Entra on their own meanwhile", exc)


def _derive(material: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 of the credential, for one purpose (`info`)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(material)
