"""The fleet's token cache: what Redis holds is encrypted, bound to its tenant and credential, and expires."""

from __future__ import annotations

import time

import pytest
import redis

from worker.errors import AuthError, CredentialsRefused
from worker.tokencache import AccessToken, SharedTokenCache

TENANT = "7155e3c8-175e-4311-97ef-572edc3aa3db"
OTHER = "0d5e1a7f-3c40-4a6b-9a1b-5d8f2f0e1c11"
CONTEXT = "a3111f15-658e-457c-9689-fd20fe907330 https://login.microsoftonline.com https://graph.microsoft.com/.default"
VALUE = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.a-very-secret-access-token.signature"


@pytest.fixture
def cache(store: redis.Redis) -> SharedTokenCache:
    return SharedTokenCache(store, b"the client secret", CONTEXT)


def a_token(lifetime: float = 3599) -> AccessToken:
    now = time.time()
    return AccessToken(VALUE, now + lifetime, now)


def test_redis_holds_the_token_encrypted(cache: SharedTokenCache, store: redis.Redis) -> None:
    cache.put(TENANT, a_token())

    [key] = store.keys("teams-notify:token:*")
    raw = str(store.get(key))
    assert key == f"teams-notify:token:{TENANT}:{cache.slot}"
    assert raw.startswith("v1.")
    assert VALUE not in raw
    assert "a-very-secret" not in raw
    got = cache.get(TENANT)
    assert got is not None
    assert got.value == VALUE


def test_the_token_expires_from_redis_with_itself(cache: SharedTokenCache, store: redis.Redis) -> None:
    cache.put(TENANT, a_token(lifetime=120))

    assert 118_000 < int(store.pttl(cache.key(TENANT))) <= 120_000


def test_a_token_moved_to_another_tenants_key_is_not_read(cache: SharedTokenCache, store: redis.Redis) -> None:
    cache.put(TENANT, a_token())

    store.set(cache.key(OTHER), str(store.get(cache.key(TENANT))))

    assert cache.get(OTHER) is None


def test_another_credential_has_its_own_slot_and_cannot_read_this_one(
    cache: SharedTokenCache, store: redis.Redis
) -> None:
    cache.put(TENANT, a_token())
    rotated = SharedTokenCache(store, b"the new client secret", CONTEXT)

    assert rotated.slot != cache.slot
    assert rotated.get(TENANT) is None
    store.set(rotated.key(TENANT), str(store.get(cache.key(TENANT))))
    assert rotated.get(TENANT) is None  # even under its own key name: another key decrypts nothing


def test_a_damaged_value_is_a_miss(cache: SharedTokenCache, store: redis.Redis) -> None:
    for damaged in ("v1.AAAA", "v1.not base64!", "v2.whatever", "plain"):
        store.set(cache.key(TENANT), damaged)
        assert cache.get(TENANT) is None


def test_a_token_is_discarded_only_if_it_is_still_the_one_stored(cache: SharedTokenCache) -> None:
    old = cache.put(TENANT, a_token())
    new = cache.put(TENANT, AccessToken("another-token", time.time() + 3599, time.time()))

    assert cache.discard(TENANT, old) is False
    assert cache.get(TENANT) == new
    assert cache.discard(TENANT, new) is True
    assert cache.get(TENANT) is None


def test_the_refresh_lock_has_one_holder_and_only_it_releases(cache: SharedTokenCache) -> None:
    held = cache.lock(TENANT)

    assert held is not None
    assert cache.lock(TENANT) is None
    age = cache.lock_age(TENANT)
    assert age is not None
    assert 0 <= age < 1
    cache.unlock(TENANT, "someone else")
    assert cache.lock(TENANT) is None
    cache.unlock(TENANT, held)
    assert cache.lock_age(TENANT) is None
    assert cache.lock(OTHER) is not None


def test_a_refusal_comes_back_as_the_same_kind_of_error(cache: SharedTokenCache, store: redis.Redis) -> None:
    cache.refuse(TENANT, CredentialsRefused("AADSTS7000215: Invalid client secret provided", code=7000215), 4, 2)

    refusal = cache.refusal(TENANT)
    assert refusal is not None
    assert isinstance(refusal.error, CredentialsRefused)
    assert (refusal.error.transient, refusal.error.code, refusal.failures) == (True, 7000215, 2)
    assert refusal.until == pytest.approx(time.time() + 4, abs=1)
    store.set(
        f"teams-notify:token-refusal:{TENANT}:{cache.slot}",
        '{"kind": "SystemExit", "message": "x", "transient": false, "until": 0, "failures": 1}',
    )
    odd = cache.refusal(TENANT)
    assert odd is not None
    assert type(odd.error) is AuthError
    cache.forgive(TENANT)
    assert cache.refusal(TENANT) is None
