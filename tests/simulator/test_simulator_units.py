"""The simulator's pure parts, with time injected: windows, Retry-After rounding, config parsing."""

from __future__ import annotations

import pytest

from worker.simulator import SimulatorConfig
from worker.simulator.config import GRAPH_RATE_LIMITS, parse_rate_limits, resolve_rate_limits
from worker.simulator.ratelimit import RateLimiter, Window, format_retry_after


def test_rates_become_windows_of_whole_requests() -> None:
    assert Window.for_rate("bulk_tenant", 2) == Window("bulk_tenant", 2, 1.0)
    assert Window.for_rate("user_minute", 10) == Window("user_minute", 10, 60.0)
    assert Window.for_rate("team", 0.5) == Window("team", 1, 2.0)
    assert Window.for_rate("single_app", 2.5) == Window("single_app", 2, 0.8)


def test_a_sliding_window_refuses_until_its_oldest_hit_leaves() -> None:
    limiter = RateLimiter({"bulk_tenant": 2})
    key = [("bulk_tenant", ("app", "tenant"))]
    assert limiter.acquire(key, now=100.0) is None
    assert limiter.acquire(key, now=100.4) is None
    throttle = limiter.acquire(key, now=100.5)
    assert throttle is not None
    assert throttle.retry_after == pytest.approx(0.5)
    assert limiter.acquire(key, now=100.9) is not None
    assert limiter.acquire(key, now=101.0) is None


def test_a_refusal_by_one_window_counts_in_none() -> None:
    limiter = RateLimiter({"single_tenant": 5, "user_minute": 1})
    first = [("single_tenant", ("app", "t")), ("user_minute", ("t", "alice"))]
    assert limiter.acquire(first, now=0.0) is None
    refused = limiter.acquire(first, now=0.1)
    assert refused is not None
    assert refused.limit == "user_minute"
    for offset in range(4):  # the refused call took no single_tenant slot: four more still fit
        assert limiter.acquire([("single_tenant", ("app", "t"))], now=0.2 + offset / 100) is None
    assert limiter.acquire([("single_tenant", ("app", "t"))], now=0.3) is not None


def test_the_longest_wait_wins_when_several_windows_are_full() -> None:
    limiter = RateLimiter({"single_tenant": 1, "user_minute": 1})
    keys = [("single_tenant", ("a", "t")), ("user_minute", ("t", "u"))]
    assert limiter.acquire(keys, now=0.0) is None
    throttle = limiter.acquire(keys, now=0.5)
    assert throttle is not None
    assert throttle.retry_after == pytest.approx(59.5)


@pytest.mark.parametrize(
    ("seconds", "decimal", "header"),
    [
        (0.2, False, "1"),
        (1.0, False, "1"),
        (1.01, False, "2"),
        (0.0, False, "1"),
        (0.123, True, "0.13"),
        (1.0, True, "1"),
        (2.5, True, "2.5"),
    ],
)
def test_retry_after_is_rounded_up(seconds: float, decimal: bool, header: str) -> None:
    assert format_retry_after(seconds, decimal) == header


def test_rate_limit_specs_parse_like_the_workers_setting() -> None:
    assert parse_rate_limits("graph") == "graph"
    assert parse_rate_limits(" OFF ") == "off"
    assert parse_rate_limits("bulk_tenant=4, user_minute=0") == {"bulk_tenant": 4.0, "user_minute": 0.0}
    assert resolve_rate_limits("off") == {}
    assert resolve_rate_limits("graph") == dict(GRAPH_RATE_LIMITS)
    assert "user_minute" not in resolve_rate_limits({"user_minute": 0})
    for bad in ("bulk=1", "bulk_tenant", "team=-1", "team=fast"):
        with pytest.raises(ValueError, match="rate_limits"):
            parse_rate_limits(bad)


def test_the_config_normalises_and_hides_secrets() -> None:
    config = SimulatorConfig(conflict_app_ids={"ABC"}, clients={"App": "hunter2"}, error_statuses=[503])
    assert config.conflict_app_ids == frozenset({"abc"})
    assert config.clients == {"app": "hunter2"}
    assert config.error_statuses == (503,)
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.public_dict())


def test_the_config_refuses_runtime_changes_to_where_it_listens() -> None:
    with pytest.raises(ValueError, match="cannot be changed"):
        SimulatorConfig().updated({"host": "0.0.0.0"})
    assert SimulatorConfig().updated({"error_rate": 0.5}).error_rate == 0.5
