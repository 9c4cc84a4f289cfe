"""The worker's settings: read once from the environment at start, checked, frozen.

This is the only module that reads `os.environ`. A missing or malformed setting raises ConfigurationError
with one line naming the variable; the CLI prints that line and exits, never a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from producers.connection import DEFAULT_REDIS_URL, ReplicaWait, check_store_url, is_sentinel, redacted
from producers.errors import ConfigurationError
from producers.ids import check_tenant_id, is_guid
from worker import credentials
from worker.credentials import ClientCredential

#: Graph and Entra hosts of each national cloud (learn.microsoft.com/graph/deployments).
CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("https://graph.microsoft.com/v1.0", "https://login.microsoftonline.com"),
    "usgov": ("https://graph.microsoft.us/v1.0", "https://login.microsoftonline.us"),
    "dod": ("https://dod-graph.microsoft.us/v1.0", "https://login.microsoftonline.us"),
    "china": ("https://microsoftgraph.chinacloudapi.cn/v1.0", "https://login.chinacloudapi.cn"),
}

#: Graph's published Teams limits (learn.microsoft.com/graph/throttling-limits): requests a second,
#: except `user_minute`, notifications a minute to one user.
GRAPH_RATE_LIMITS: dict[str, float] = {
    "bulk_tenant": 2,
    "bulk_app": 20,
    "single_tenant": 5,
    "single_app": 50,
    "team": 4,
    "user_minute": 10,
}

#: How long an ended job's record, recipients and idempotency key are kept (`TEAMS_NOTIFY_RETENTION`).
DEFAULT_RETENTION = 7 * 86400.0
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: The schemes of a RabbitMQ broker (`TEAMS_NOTIFY_BROKER_URL`).
AMQP_SCHEMES = ("amqp", "amqps")

LogFormat = Literal["json", "text", "auto"]
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


@dataclass(frozen=True)
class Settings:
    """Everything the worker and the CLI are configured with; the secret stays out of `repr`."""

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str | None = None
    redis_wait: ReplicaWait | None = None
    cloud: str = "global"
    graph_url: str = CLOUDS["global"][0]
    authority_host: str = CLOUDS["global"][1]
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    client_certificate: str | None = None
    client_certificate_password: str | None = field(default=None, repr=False)
    rate_limits: Mapping[str, float] | None = field(default_factory=lambda: dict(GRAPH_RATE_LIMITS))
    metrics_port: int = 9808
    metrics_tenants: bool = True
    log_format: LogFormat = "auto"
    log_level: str = "INFO"
    app_manifest: str | None = None
    visibility_timeout: int = 300
    retention: float = DEFAULT_RETENTION

    def __repr__(self) -> str:
        secret = "'***'" if self.client_secret else "None"
        password = "'***'" if self.client_certificate_password else "None"
        return (
            f"Settings(redis_url={redacted(self.redis_url)!r}, broker_url={redacted(self.broker)!r}, "
            f"redis_wait='{self.replica_wait}', cloud={self.cloud!r}, graph_url={self.graph_url!r}, "
            f"authority_host={self.authority_host!r}, tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, "
            f"client_secret={secret}, client_certificate={self.client_certificate!r}, "
            f"client_certificate_password={password}, rate_limits={self.rate_limits!r}, "
            f"metrics_port={self.metrics_port}, metrics_tenants={self.metrics_tenants}, "
            f"log_format={self.log_format!r}, log_level={self.log_level!r}, "
            f"visibility_timeout={self.visibility_timeout}, retention={self.retention:g})"
        )

    @property
    def broker(self) -> str:
        """The Celery broker's URL: `TEAMS_NOTIFY_BROKER_URL`, else the store's."""
        return self.broker_url or self.redis_url

    @property
    def replica_wait(self) -> ReplicaWait:
        """What a producer's enqueue waits for (`TEAMS_NOTIFY_REDIS_WAIT`; by default one replica through Sentinels)."""
        return self.redis_wait or ReplicaWait.parse(None, is_sentinel(self.redis_url))

    @property
    def graph_scope(self) -> str:
        """The scope to ask Entra for: the cloud's Graph resource, whatever URL Graph is reached at."""
        resource = urlsplit(CLOUDS[self.cloud][0])
        return f"{resource.scheme}://{resource.netloc}/.default"

    @property
    def custom_authority(self) -> bool:
        """True when Entra is not one of Microsoft's clouds (a simulator): MSAL must not discover."""
        return self.authority_host not in {host for _, host in CLOUDS.values()}

    def require_credentials(self) -> tuple[str, str]:
        """The client id and the credential a worker needs to get tokens: the secret, or the certificate file's
        path when a certificate replaces it (checked: its key, password and certificate); a clear error if not.
        """
        credential = self.credential()
        return credential.client_id, credential.source or self.client_secret or ""

    def credential(self) -> ClientCredential:
        """The app's credential with Entra: the certificate when one is set (it replaces the secret), else the secret.

        Raises:
            ConfigurationError: naming the variable that is missing or whose certificate cannot be used.
        """
        if not self.client_id:
            raise ConfigurationError("TEAMS_NOTIFY_CLIENT_ID is not set: the worker needs the Entra app's client id")
        if self.client_certificate:
            return credentials.from_certificate_file(
                self.client_id, self.client_certificate, self.client_certificate_password
            )
        if not self.client_secret:
            raise ConfigurationError(
                "TEAMS_NOTIFY_CLIENT_SECRET is not set: the worker needs the Entra app's secret "
                "(or a certificate in TEAMS_NOTIFY_CLIENT_CERTIFICATE)"
            )
        return credentials.from_secret(self.client_id, self.client_secret)


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigurationError(f"{name}={value!r} is not an https URL")
    return value.rstrip("/")


def parse_rate_limits(value: str) -> dict[str, float] | None:
    """`graph`, `off` (None: no pacing), or overrides of Graph's figures as `name=value,...`."""
    name = "TEAMS_NOTIFY_RATE_LIMITS"
    text = value.strip()
    if text in ("", "graph"):
        return dict(GRAPH_RATE_LIMITS)
    if text == "off":
        return None
    limits = dict(GRAPH_RATE_LIMITS)
    for item in text.split(","):
        key, sep, number = item.partition("=")
        key = key.strip()
        if not sep or key not in GRAPH_RATE_LIMITS:
            known = ", ".join(GRAPH_RATE_LIMITS)
            raise ConfigurationError(f"{name}: {item.strip()!r} is not name=value with a name among {known}")
        try:
            limits[key] = float(number)
        except ValueError:
            raise ConfigurationError(f"{name}: {key} must be a number, not {number.strip()!r}") from None
        if not math.isfinite(limits[key]) or limits[key] <= 0:
            raise ConfigurationError(f"{name}: {key} must be a positive number, not {number.strip()!r}")
    return limits


def check_broker_url(url: str, name: str = "TEAMS_NOTIFY_BROKER_URL") -> None:
    """A Redis, Sentinel or RabbitMQ URL (`amqp://`, `amqps://`; several RabbitMQ nodes joined by `;`)."""
    parts = [part.strip() for part in url.split(";")]
    schemes = {urlsplit(part).scheme.lower() for part in parts}
    if len(parts) > 1 and not schemes <= set(AMQP_SCHEMES):
        raise ConfigurationError(f"{name}={redacted(url)!r}: only amqp:// URLs can be joined by ';' (one per node)")
    for part in parts:
        scheme = urlsplit(part).scheme.lower()
        if scheme in AMQP_SCHEMES:
            parsed = urlsplit(part)
            try:
                parsed.port  # noqa: B018 - raises ValueError for a malformed port
            except ValueError:
                raise ConfigurationError(f"{name}={redacted(part)!r} has no valid port") from None
            if not parsed.hostname:
                raise ConfigurationError(f"{name}={redacted(part)!r} names no host")
        elif scheme in ("redis", "rediss") or is_sentinel(part):
            check_store_url(part, name)
        else:
            raise ConfigurationError(
                f"{name}={redacted(part)!r} is not a redis://, rediss://, redis+sentinel://, amqp:// or amqps:// URL"
            )


def parse_switch(name: str, value: str) -> bool:
    """`on` (True) or `off` (False), in any case."""
    text = value.strip().lower()
    if text not in ("on", "off"):
        raise ConfigurationError(f"{name}={value!r} is not on or off")
    return text == "on"


def parse_duration(name: str, value: str) -> float:
    """A positive duration such as `90s`, `15m`, `12h` or `7d` (a bare number is seconds), in seconds."""
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ConfigurationError(f"{name}={value!r} is not a duration such as 90s, 15m, 12h or 7d") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name}={value!r} must be a positive duration such as 7d")
    return seconds


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, checked; raises ConfigurationError naming the variable."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    redis_url = get("TEAMS_NOTIFY_REDIS_URL") or DEFAULT_REDIS_URL
    check_store_url(redis_url, "TEAMS_NOTIFY_REDIS_URL")
    broker_url = get("TEAMS_NOTIFY_BROKER_URL")
    if broker_url is not None:
        check_broker_url(broker_url)
    wait_text = get("TEAMS_NOTIFY_REDIS_WAIT")
    redis_wait = ReplicaWait.parse(wait_text, is_sentinel(redis_url)) if wait_text else None
    cloud = (get("TEAMS_NOTIFY_CLOUD") or "global").lower()
    if cloud not in CLOUDS:
        raise ConfigurationError(f"TEAMS_NOTIFY_CLOUD={cloud!r} is not one of {', '.join(CLOUDS)}")
    graph_url = _url("TEAMS_NOTIFY_GRAPH_URL", get("TEAMS_NOTIFY_GRAPH_URL") or CLOUDS[cloud][0])
    authority = _url("TEAMS_NOTIFY_AUTHORITY_HOST", get("TEAMS_NOTIFY_AUTHORITY_HOST") or CLOUDS[cloud][1])
    tenant_id = get("TEAMS_NOTIFY_TENANT_ID")
    if tenant_id is not None:
        try:
            check_tenant_id(tenant_id)
        except ValueError as exc:
            raise ConfigurationError(f"TEAMS_NOTIFY_TENANT_ID: {exc}") from None
    client_id = get("TEAMS_NOTIFY_CLIENT_ID")
    if client_id is not None and not is_guid(client_id):
        raise ConfigurationError(f"TEAMS_NOTIFY_CLIENT_ID={client_id!r} is not a GUID (the Entra app's client id)")
    port_text = get("TEAMS_NOTIFY_METRICS_PORT") or "9808"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigurationError(f"TEAMS_NOTIFY_METRICS_PORT={port_text!r} is not a port number (0 turns it off)")
    log_format = (get("TEAMS_NOTIFY_LOG_FORMAT") or "auto").lower()
    if log_format not in ("json", "text", "auto"):
        raise ConfigurationError(f"TEAMS_NOTIFY_LOG_FORMAT={log_format!r} is not json, text or auto")
    log_level = (get("TEAMS_NOTIFY_LOG_LEVEL") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigurationError(f"TEAMS_NOTIFY_LOG_LEVEL={log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    visibility = get("TEAMS_NOTIFY_VISIBILITY_TIMEOUT") or "300"
    if not visibility.isdigit() or int(visibility) < 1:
        raise ConfigurationError(f"TEAMS_NOTIFY_VISIBILITY_TIMEOUT={visibility!r} is not a number of seconds")
    certificate = get("TEAMS_NOTIFY_CLIENT_CERTIFICATE")
    if certificate is not None and not os.path.isfile(certificate):
        raise ConfigurationError(f"TEAMS_NOTIFY_CLIENT_CERTIFICATE={certificate!r}: no such file")
    manifest = get("TEAMS_NOTIFY_APP_MANIFEST")
    if manifest is not None and not os.path.isfile(manifest):
        raise ConfigurationError(f"TEAMS_NOTIFY_APP_MANIFEST={manifest!r}: no such file")
    return Settings(
        redis_url=redis_url,
        broker_url=broker_url,
        redis_wait=redis_wait,
        cloud=cloud,
        graph_url=graph_url,
        authority_host=authority,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=get("TEAMS_NOTIFY_CLIENT_SECRET"),
        client_certificate=certificate,
        # A password may start or end with spaces: taken as it is, not stripped.
        client_certificate_password=env.get("TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD") or None,
        rate_limits=parse_rate_limits(get("TEAMS_NOTIFY_RATE_LIMITS") or "graph"),
        metrics_port=int(port_text),
        metrics_tenants=parse_switch("TEAMS_NOTIFY_METRICS_TENANTS", get("TEAMS_NOTIFY_METRICS_TENANTS") or "on"),
        log_format=log_format,  # type: ignore[arg-type]  # checked against the Literal just above
        log_level=log_level,
        app_manifest=manifest,
        visibility_timeout=int(visibility),
        retention=parse_duration("TEAMS_NOTIFY_RETENTION", get("TEAMS_NOTIFY_RETENTION") or "7d"),
    )
