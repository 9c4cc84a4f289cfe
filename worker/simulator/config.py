"""The simulator's knobs: one frozen settings object, checked when built, so a bad value fails at start."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.simulator.assertions import certificate_thumbprint, normalised_certificates

#: Where the simulator listens unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
#: The simulator's default port (0 asks the system for a free one).
DEFAULT_PORT = 8443
#: Lifetime of issued access tokens, in seconds; Entra's real range is 60 to 90 minutes.
DEFAULT_TOKEN_LIFETIME = 3599
#: Graph answers 412 to a bulk send whose access token expires within this many seconds.
BULK_MIN_TOKEN_SECONDS = 45 * 60
#: The statuses a random fault picks from.
DEFAULT_ERROR_STATUSES = (429, 500, 502, 503, 504)
#: Graph's published Teams limits: requests/s, except `user_minute` (notifications a minute to one user).
GRAPH_RATE_LIMITS: Mapping[str, float] = {
    "bulk_tenant": 2.0,
    "bulk_app": 20.0,
    "single_tenant": 5.0,
    "single_app": 50.0,
    "team": 4.0,
    "user_minute": 10.0,
}
#: Fields `PATCH /_simulator/config` may change while the simulator runs.
PATCHABLE_FIELDS = frozenset(
    {
        "token_lifetime",
        "latency_ms",
        "latency_jitter_ms",
        "rate_limits",
        "retry_after_decimal",
        "error_rate",
        "error_statuses",
        "fault_retry_after",
        "drop_rate",
        "conflict_app_ids",
        "conflict_user_ids",
        "clients",
        "client_certificates",
        "token_lifetimes",
        "hung_token_tenants",
        "token_fault_status",
        "seed",
    }
)

#: Statuses the token endpoint can be told to answer with (`token_fault_status`), as Entra does when it is down.
TOKEN_FAULT_STATUSES = frozenset({429, 500, 502, 503, 504})

RateLimitSpec = str | Mapping[str, float]


def default_state_dir() -> Path:
    """The per-user cache directory that keeps the CA between runs, so clients keep trusting it."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        base = os.path.join(tempfile.gettempdir(), "teams-notify-cache")
    return Path(base) / "teams-notify" / "simulator"


def parse_rate_limits(text: str) -> RateLimitSpec:
    """Reads `graph`, `off` or `name=value,...` (the CLI and environment form) into a spec."""
    cleaned = text.strip()
    if cleaned.lower() in {"graph", "off"}:
        return cleaned.lower()
    overrides: dict[str, float] = {}
    for item in cleaned.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"rate_limits: expected graph, off or name=value,... but got {text!r}")
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"rate_limits: {name.strip()} must be a number, not {value.strip()!r}") from None
    return _check_rate_limits(overrides)


def resolve_rate_limits(spec: RateLimitSpec) -> dict[str, float]:
    """The limits in force for a spec; a limit of 0 (or `off`) is not enforced."""
    if isinstance(spec, str):
        spec = parse_rate_limits(spec)
    if spec == "off":
        return {}
    limits = dict(GRAPH_RATE_LIMITS)
    if isinstance(spec, Mapping):
        limits.update(spec)
    return {name: value for name, value in limits.items() if value > 0}


def _check_rate_limits(overrides: Mapping[str, Any]) -> dict[str, float]:
    """Names must be Graph's; values non-negative finite numbers."""
    checked: dict[str, float] = {}
    for name, value in overrides.items():
        if name not in GRAPH_RATE_LIMITS:
            known = ", ".join(GRAPH_RATE_LIMITS)
            raise ValueError(f"rate_limits: unknown name {name!r} (known: {known})")
        if not _is_number(value) or value < 0 or not math.isfinite(value):
            raise ValueError(f"rate_limits: {name} must be a number >= 0, not {value!r}")
        checked[name] = float(value)
    return checked


def _is_number(value: object) -> bool:
    """True for int or float, never bool (JSON `true` must not pass as 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(name: str, value: object, low: float, high: float = math.inf) -> None:
    """Refuses a non-number or a number outside [low, high], naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        valid = False
    else:
        valid = low <= value <= high
    if not valid:
        bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f">= {low:g}"
        raise ValueError(f"{name} must be a number {bound}, not {value!r}")


def _str_set(name: str, values: object) -> frozenset[str]:
    """A set of non-empty strings, lower-cased (Entra ids compare case-insensitively)."""
    if isinstance(values, str) or not isinstance(values, AbstractSet | Sequence):
        raise ValueError(f"{name} must be a list of strings, not {values!r}")
    items = list(values)
    if not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{name} must hold non-empty strings, not {items!r}")
    return frozenset(item.lower() for item in items)


@dataclass(frozen=True)
class SimulatorConfig:
    """Every knob of the simulator; see the module constants for the defaults' meaning."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    state_dir: Path | None = None
    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    rate_limits: RateLimitSpec = "graph"
    retry_after_decimal: bool = False
    error_rate: float = 0.0
    error_statuses: Sequence[int] = DEFAULT_ERROR_STATUSES
    fault_retry_after: float = 1.0
    drop_rate: float = 0.0
    conflict_app_ids: AbstractSet[str] = frozenset()
    conflict_user_ids: AbstractSet[str] = frozenset()
    clients: Mapping[str, str] = field(default_factory=dict, repr=False)
    client_certificates: Mapping[str, Sequence[str]] = field(default_factory=dict, repr=False)
    token_lifetimes: Mapping[str, int] = field(default_factory=dict)
    hung_token_tenants: AbstractSet[str] = frozenset()
    token_fault_status: int | None = None
    seed: int | None = None
    access_log: bool = False
    cert_hostnames: Sequence[str] = ()

    def __post_init__(self) -> None:
        """Checks and normalises every field, so a config that exists is a valid one."""
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty string, not {self.host!r}")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, not {self.port!r}")
        if self.state_dir is not None:
            self._set("state_dir", Path(self.state_dir).expanduser())
        if not isinstance(self.token_lifetime, int) or isinstance(self.token_lifetime, bool):
            raise ValueError(f"token_lifetime must be an integer number of seconds, not {self.token_lifetime!r}")
        _check_number("token_lifetime", self.token_lifetime, 1, 24 * 3600)
        _check_number("latency_ms", self.latency_ms, 0)
        _check_number("latency_jitter_ms", self.latency_jitter_ms, 0)
        _check_number("error_rate", self.error_rate, 0, 1)
        _check_number("drop_rate", self.drop_rate, 0, 1)
        _check_number("fault_retry_after", self.fault_retry_after, 0)
        for flag in ("retry_after_decimal", "access_log"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, not {getattr(self, flag)!r}")
        self._set("rate_limits", self._normalised_rate_limits(self.rate_limits))
        self._set("error_statuses", self._normalised_statuses(self.error_statuses))
        self._set("conflict_app_ids", _str_set("conflict_app_ids", self.conflict_app_ids))
        self._set("conflict_user_ids", _str_set("conflict_user_ids", self.conflict_user_ids))
        self._set("clients", self._normalised_clients(self.clients))
        self._set("client_certificates", normalised_certificates(self.client_certificates))
        self._set("token_lifetimes", self._normalised_lifetimes(self.token_lifetimes))
        self._set("hung_token_tenants", _str_set("hung_token_tenants", self.hung_token_tenants))
        if self.token_fault_status is not None and self.token_fault_status not in TOKEN_FAULT_STATUSES:
            raise ValueError(f"token_fault_status must be null or one of {sorted(TOKEN_FAULT_STATUSES)}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ValueError(f"seed must be an integer or null, not {self.seed!r}")
        if isinstance(self.cert_hostnames, str) or not all(
            isinstance(name, str) and name for name in self.cert_hostnames
        ):
            raise ValueError(f"cert_hostnames must be a list of host names, not {self.cert_hostnames!r}")
        self._set("cert_hostnames", tuple(self.cert_hostnames))

    def _set(self, name: str, value: object) -> None:
        """Replaces a field of this frozen instance during `__post_init__` only."""
        object.__setattr__(self, name, value)

    @staticmethod
    def _normalised_rate_limits(spec: object) -> RateLimitSpec:
        """`graph`, `off`, or a dict of overrides of Graph's figures."""
        if isinstance(spec, str):
            return parse_rate_limits(spec)
        if isinstance(spec, Mapping):
            return _check_rate_limits(spec)
        raise ValueError(f"rate_limits must be 'graph', 'off' or a mapping of overrides, not {spec!r}")

    @staticmethod
    def _normalised_statuses(statuses: object) -> tuple[int, ...]:
        """A non-empty list of HTTP error statuses (400 to 599)."""
        if isinstance(statuses, str) or not isinstance(statuses, Sequence | AbstractSet) or not statuses:
            raise ValueError(f"error_statuses must be a non-empty list of HTTP statuses, not {statuses!r}")
        for status in statuses:
            if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
                raise ValueError(f"error_statuses must hold HTTP error statuses (400-599), not {status!r}")
        return tuple(statuses)

    @staticmethod
    def _normalised_clients(clients: object) -> Mapping[str, str]:
        """Client id (lower-cased) to secret; empty means any client with a non-empty secret."""
        if not isinstance(clients, Mapping):
            raise ValueError("clients must map client ids to secrets")
        normalised: dict[str, str] = {}
        for client_id, secret in clients.items():
            if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
                raise ValueError("clients must map non-empty client ids to non-empty secrets")
            normalised[client_id.lower()] = secret
        return normalised

    @staticmethod
    def _normalised_lifetimes(lifetimes: object) -> Mapping[str, int]:
        """Tenant (lower-cased) to the lifetime of its tokens, in whole seconds, as `token_lifetime`."""
        if not isinstance(lifetimes, Mapping):
            raise ValueError("token_lifetimes must map tenants to seconds")
        normalised: dict[str, int] = {}
        for tenant, seconds in lifetimes.items():
            if not isinstance(tenant, str) or not tenant:
                raise ValueError(f"token_lifetimes: {tenant!r} is not a tenant")
            if not isinstance(seconds, int) or isinstance(seconds, bool):
                raise ValueError(f"token_lifetimes: {tenant} must be an integer number of seconds, not {seconds!r}")
            _check_number(f"token_lifetimes: {tenant}", seconds, 1, 24 * 3600)
            normalised[tenant.lower()] = seconds
        return normalised

    def lifetime_for(self, *tenants: str) -> int:
        """The lifetime of a tenant's tokens (named by any of its spellings), else `token_lifetime`."""
        return next((self.token_lifetimes[t.lower()] for t in tenants if t.lower() in self.token_lifetimes), None) or (
            self.token_lifetime
        )

    @property
    def resolved_state_dir(self) -> Path:
        """The state directory in use: the configured one or the per-user default."""
        return self.state_dir if self.state_dir is not None else default_state_dir()

    @property
    def effective_rate_limits(self) -> dict[str, float]:
        """The limits enforced, by name (absent: not enforced)."""
        return resolve_rate_limits(self.rate_limits)

    def updated(self, changes: Mapping[str, object]) -> SimulatorConfig:
        """A copy with runtime changes applied (from `PATCH /_simulator/config`); ValueError if invalid."""
        if not isinstance(changes, Mapping) or not changes:
            raise ValueError("expected a non-empty JSON object of config fields")
        known = {item.name for item in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise ValueError(f"unknown config field {name!r}")
            if name not in PATCHABLE_FIELDS:
                raise ValueError(f"config field {name!r} cannot be changed while the simulator runs")
        # Values come from JSON, typed `object`; __post_init__ checks every one of them.
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def public_dict(self) -> dict[str, object]:
        """The config as JSON-ready data, without the client secrets."""
        return {
            "host": self.host,
            "port": self.port,
            "state_dir": str(self.resolved_state_dir),
            "token_lifetime": self.token_lifetime,
            "latency_ms": self.latency_ms,
            "latency_jitter_ms": self.latency_jitter_ms,
            "rate_limits": self.rate_limits if isinstance(self.rate_limits, str) else dict(self.rate_limits),
            "effective_rate_limits": self.effective_rate_limits,
            "retry_after_decimal": self.retry_after_decimal,
            "error_rate": self.error_rate,
            "error_statuses": list(self.error_statuses),
            "fault_retry_after": self.fault_retry_after,
            "drop_rate": self.drop_rate,
            "conflict_app_ids": sorted(self.conflict_app_ids),
            "conflict_user_ids": sorted(self.conflict_user_ids),
            "clients": sorted(self.clients),
            "client_certificates": {
                client: [certificate_thumbprint(pem) for pem in pems]
                for client, pems in self.client_certificates.items()
            },
            "token_lifetimes": dict(self.token_lifetimes),
            "hung_token_tenants": sorted(self.hung_token_tenants),
            "token_fault_status": self.token_fault_status,
            "seed": self.seed,
            "access_log": self.access_log,
            "cert_hostnames": list(self.cert_hostnames),
        }
