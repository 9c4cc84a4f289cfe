"""The retry policy: Retry-After read right, backoff never shorter than it, Redis waited for through an outage."""

from __future__ import annotations

import itertools
import random
import warnings
from email.utils import formatdate

import pytest
import redis

from worker import retrying
from worker.errors import AuthError, Throttled, TransientGraphError
from worker.retrying import (
    FIRST_BACKOFF,
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    backoff,
    parse_retry_after,
    persistently,
    retry_after_of,
)

NOW = 1_800_000_000.0


class Flaky:
    """A Redis step that fails with the given errors in turn, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "recorded"


class Jitter(random.Random):
    """A random source that always draws the same number."""

    def __init__(self, draw: float) -> None:
        super().__init__()
        self.draw = draw

    def random(self) -> float:
        return self.draw


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def throttled(retry_after: float | None) -> Throttled:
    return Throttled("Too many requests", retry_after=retry_after, status=429)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1", 1.0), ("120", 120.0), ("1.5", 1.5), ("0.25", 0.25), (" 2 ", 2.0), ("0", 0.0)],
)
def test_a_retry_after_in_seconds_is_read_as_a_number(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_a_retry_after_http_date_in_the_future_is_the_seconds_until_then() -> None:
    assert parse_retry_after(formatdate(NOW + 90, usegmt=True), now=NOW) == pytest.approx(90.0)


def test_a_retry_after_http_date_without_gmt_is_read_as_utc() -> None:
    value = formatdate(NOW + 30, usegmt=True).replace(" GMT", "")

    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)


def test_a_retry_after_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after(formatdate(NOW - 90, usegmt=True), now=NOW) == 0.0


@pytest.mark.parametrize("value", ["soon", "1,5", "Mon, 99 Foo 2026", "nan", "inf", "-inf", "1e999"])
def test_a_malformed_retry_after_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("value", [None, "", "   "])
def test_an_absent_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("value", ["-1", "-0.5", "-3600"])
def test_a_negative_retry_after_never_means_a_negative_wait(value: str) -> None:
    assert parse_retry_after(value) in (None, 0.0)


@pytest.mark.parametrize(
    ("attempts", "retry_after"),
    list(itertools.product([0, 1, 3, 6, 12, 23, MAX_ATTEMPTS, 100], [None, 0.0, 1.5, 30.0, 599.0, 3000.0])),
)
def test_a_backoff_is_never_below_retry_after(attempts: int, retry_after: float | None) -> None:
    for draw in (0.0, 0.5, 0.999):
        wait = backoff(attempts, throttled(retry_after), Jitter(draw))

        assert wait >= (retry_after or 0)
        assert wait > 0


def test_a_backoff_grows_with_attempts_up_to_its_cap() -> None:
    waits = [backoff(attempts, TransientGraphError("HTTP 502"), Jitter(0.999)) for attempts in range(1, 40)]

    assert waits == sorted(waits)
    assert waits[0] <= FIRST_BACKOFF < waits[1]
    assert waits[-1] <= MAX_BACKOFF


def test_a_backoff_is_jittered_so_requests_failing_together_spread_out() -> None:
    waits = {backoff(5, None, Jitter(draw)) for draw in (0.0, 0.25, 0.5, 0.75)}

    assert len(waits) == 4
    assert max(waits) <= 2 * min(waits)


def test_a_backoff_without_an_error_is_a_plain_backoff() -> None:
    assert 0 < backoff(3, None) <= MAX_BACKOFF


@pytest.mark.parametrize(
    ("error", "seconds"),
    [(throttled(7.5), 7.5), (throttled(None), 0.0), (TransientGraphError("HTTP 502"), 0.0), (None, 0.0)],
)
def test_retry_after_of_an_error_is_what_graph_asked_for(error: Exception | None, seconds: float) -> None:
    assert retry_after_of(error) == seconds


def test_retry_after_of_an_auth_error_is_nothing() -> None:
    assert retry_after_of(AuthError("Entra is away", transient=True)) == 0.0


@pytest.mark.parametrize("error", [redis.ConnectionError("refused"), redis.TimeoutError("timed out")])
def test_recording_an_outcome_waits_for_redis_through_a_short_outage(error: Exception) -> None:
    sleep = FakeSleep()
    step = Flaky(error, error, error)

    assert persistently().copy(sleep=sleep)(step) == "recorded"

    assert step.calls == 4
    assert len(sleep.waits) == 3
    assert all(0 < wait <= 5.5 for wait in sleep.waits)


@pytest.mark.parametrize("error", [redis.ResponseError("WRONGTYPE"), ValueError("a bug of ours")])
def test_an_error_that_waiting_cannot_fix_is_raised_at_once(error: Exception) -> None:
    sleep = FakeSleep()
    step = Flaky(error)

    with pytest.raises(type(error)):
        persistently().copy(sleep=sleep)(step)

    assert (step.calls, sleep.waits) == (1, [])


def test_a_redis_outage_longer_than_its_patience_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "REDIS_PATIENCE", 0.0)
    step = Flaky(redis.ConnectionError("refused"), redis.ConnectionError("refused"))

    with pytest.raises(redis.ConnectionError):
        persistently().copy(sleep=FakeSleep())(step)

    assert step.calls == 1


def test_the_redis_retry_policy_is_built_without_deprecated_arguments() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        persistently()
