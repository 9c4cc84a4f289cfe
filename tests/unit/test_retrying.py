"""The retry policy: Retry-After read right, never retried early, long waits handed back to Celery."""

from __future__ import annotations

import itertools
import random
from email.utils import formatdate

import pytest

from worker.errors import Conflict, PermanentGraphError, Throttled, TokenTooShortLived, TransientGraphError
from worker.retrying import (
    CELERY_MAX_COUNTDOWN,
    IN_PROCESS_ATTEMPTS,
    IN_PROCESS_MAX_WAIT,
    celery_countdown,
    in_process,
    parse_retry_after,
)

NOW = 1_800_000_000.0


class Flaky:
    """A Graph call that fails with the given errors in turn, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "sent"


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


def test_a_transient_error_is_retried_up_to_three_attempts_in_process() -> None:
    sleep = FakeSleep()
    call = Flaky(*(TransientGraphError("HTTP 502", status=502) for _ in range(5)))

    with pytest.raises(TransientGraphError):
        in_process(sleep)(call)

    assert call.calls == IN_PROCESS_ATTEMPTS == 3
    assert len(sleep.waits) == 2
    assert all(0 < wait <= IN_PROCESS_MAX_WAIT for wait in sleep.waits)


def test_a_transient_error_that_clears_returns_the_result() -> None:
    sleep = FakeSleep()
    call = Flaky(TransientGraphError("HTTP 504", status=504))

    assert in_process(sleep)(call) == "sent"
    assert call.calls == 2


@pytest.mark.parametrize("retry_after", [0.5, 1.5, 3.0, IN_PROCESS_MAX_WAIT])
def test_in_process_waits_are_never_shorter_than_retry_after(retry_after: float) -> None:
    for seed in range(20):
        random.seed(seed)
        sleep = FakeSleep()
        call = Flaky(throttled(retry_after), throttled(retry_after))

        assert in_process(sleep)(call) == "sent"
        assert len(sleep.waits) == 2
        assert min(sleep.waits) >= retry_after


def test_a_retry_after_too_long_to_sleep_stops_at_once() -> None:
    sleep = FakeSleep()
    call = Flaky(throttled(IN_PROCESS_MAX_WAIT + 0.1))

    with pytest.raises(Throttled) as caught:
        in_process(sleep)(call)

    assert call.calls == 1
    assert sleep.waits == []
    assert caught.value.retry_after == IN_PROCESS_MAX_WAIT + 0.1


def test_a_long_retry_after_on_a_later_attempt_also_stops_without_sleeping_it() -> None:
    sleep = FakeSleep()
    call = Flaky(throttled(1.0), throttled(60.0), throttled(1.0))

    with pytest.raises(Throttled):
        in_process(sleep)(call)

    assert call.calls == 2
    assert all(wait < 60 for wait in sleep.waits)


@pytest.mark.parametrize(
    "error",
    [
        PermanentGraphError("Invalid recipient", status=400, code="BadRequest"),
        Conflict("Found multiple applications", status=409),
        TokenTooShortLived("Token expires soon", status=412),
        ValueError("a bug of ours"),
    ],
)
def test_an_error_that_is_not_transient_is_not_retried(error: Exception) -> None:
    sleep = FakeSleep()
    call = Flaky(error)

    with pytest.raises(type(error)):
        in_process(sleep)(call)

    assert call.calls == 1
    assert sleep.waits == []


@pytest.mark.parametrize(
    ("attempts", "retry_after"),
    list(itertools.product([0, 1, 3, 6, 12, 23, 24, 100], [None, 0.0, 1.5, 30.0, 599.0, 900.0, 3000.0])),
)
def test_a_celery_countdown_is_never_below_retry_after(
    attempts: int, retry_after: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for jitter in (0.0, 0.5, 0.999):
        monkeypatch.setattr(random, "random", lambda jitter=jitter: jitter)

        countdown = celery_countdown(attempts, throttled(retry_after))

        assert countdown >= (retry_after or 0)
        assert countdown > 0


def test_a_celery_countdown_grows_with_attempts_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.999)

    countdowns = [celery_countdown(attempts, TransientGraphError("HTTP 502")) for attempts in range(3, 100, 3)]

    assert countdowns == sorted(countdowns)
    assert countdowns[0] < countdowns[-1] <= CELERY_MAX_COUNTDOWN


def test_a_celery_countdown_without_an_error_is_a_plain_backoff() -> None:
    assert 0 < celery_countdown(3, None) <= CELERY_MAX_COUNTDOWN
