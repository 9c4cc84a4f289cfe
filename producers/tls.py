"""TLS to Redis (`rediss://`, Azure Cache for Redis on 6380 among others): verified, or refused.

Every Redis client of the fleet takes its TLS settings from here: the producers' `connect`, the worker's
clients, kombu's broker connection (`broker_use_ssl`) and Celery's result backend (`redis_backend_use_ssl`).
The server's certificate must chain to a CA in the bundle `SSL_CERT_FILE` names (when set) or in the system
store, and must be valid for the host name the URL gives; otherwise the connection is refused with one line
that says which server, why, and against which CAs.

A `rediss://` URL may carry TLS options as query parameters (`URL_OPTIONS`): `ssl_ca_certs=PATH` (the CAs to
trust for this Redis instead), `ssl_certfile=PATH` and `ssl_keyfile=PATH` (a client certificate), and the
explicit opt-outs `ssl_cert_reqs=none` (or `optional`) and `ssl_check_hostname=false`, which are honoured
but logged as a warning each time a client is made. Any other `ssl_` option, or one on a `redis://` URL, is
a ConfigurationError naming the variable.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.errors import BrokerUnavailable, ConfigurationError

#: The TLS options a `rediss://` URL may carry as query parameters.
URL_OPTIONS = ("ssl_cert_reqs", "ssl_check_hostname", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
_NAME_MISMATCH = (62, 64)
#: Seconds the start-up check (`probe`) waits for a server.
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class RedisTLS:
    """How a `rediss://` connection checks its server; the defaults verify the chain and the host name."""

    cert_reqs: ssl.VerifyMode = ssl.CERT_REQUIRED
    check_hostname: bool = True
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def options(self) -> dict[str, Any]:
        """redis-py's SSLConnection arguments, which are also kombu's `broker_use_ssl` and Celery's
        `redis_backend_use_ssl` (no CA file: the system store)."""
        options: dict[str, Any] = {
            "ssl_cert_reqs": self.cert_reqs,
            "ssl_check_hostname": self.check_hostname and self.cert_reqs != ssl.CERT_NONE,
        }
        extra = {"ssl_ca_certs": self.ca_certs, "ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile}
        return options | {name: value for name, value in extra.items() if value}

    def client_options(self) -> dict[str, Any]:
        """A redis-py client's arguments: `options` and a connection that explains a refused certificate."""
        return {**self.options(), "connection_class": VerifiedSSLConnection}

    def opt_outs(self) -> list[str]:
        """The checks the URL turned off (for the warning); empty when the server is fully verified."""
        turned_off = []
        if self.cert_reqs != ssl.CERT_REQUIRED:
            turned_off.append(f"ssl_cert_reqs={self.cert_reqs.name.removeprefix('CERT_').lower()}")
        if not self.check_hostname:
            turned_off.append("ssl_check_hostname=false")
        return turned_off


def unverified_warning(variable: str, where: str, tls: RedisTLS | None) -> str | None:
    """The warning to log when a URL opts out of verification (`where`: the URL without credentials)."""
    if tls is None or not tls.opt_outs():
        return None
    return (
        f"{variable}: TLS verification of Redis at {where} is turned off ({', '.join(tls.opt_outs())} in the URL): "
        "the connection is encrypted, but anyone on the network path can pose as the server"
    )


def split_url(url: str, variable: str, environ: Mapping[str, str] | None = None) -> tuple[str, RedisTLS | None]:
    """A Redis URL without its TLS options, and those options; None for a URL without TLS.

    The URL is returned as it is unless it carries `ssl_` options (credentials are never re-encoded).

    Raises:
        ConfigurationError: naming the variable (never the password): an unknown `ssl_` option or value, a
            TLS option on a URL without TLS, or a CA or certificate file that does not exist.
    """
    text = url.strip()
    head, at, tail = text.rpartition("@")  # user and password, whatever they contain, end at the last '@'
    base, _, query = tail.partition("#")[0].partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    found = {name: value for name, value in pairs if name.startswith("ssl_")}
    if text.partition("://")[0].lower() != "rediss":
        if found:
            raise ConfigurationError(f"{variable}: {next(iter(found))} is a TLS option: it needs a rediss:// URL")
        return url, None
    tls = _parse(found, variable, os.environ if environ is None else environ)
    if not found:
        return url, tls
    rest = [(name, value) for name, value in pairs if not name.startswith("ssl_")]
    return head + at + base + (f"?{urlencode(rest)}" if rest else ""), tls


def _parse(found: dict[str, str], variable: str, environ: Mapping[str, str]) -> RedisTLS:
    unknown = sorted(set(found) - set(URL_OPTIONS))
    if unknown:
        raise ConfigurationError(f"{variable}: unknown TLS option {unknown[0]!r} (known: {', '.join(URL_OPTIONS)})")
    reqs = found.get("ssl_cert_reqs", "required").strip().lower().removeprefix("cert_")
    if reqs not in _CERT_REQS:
        raise ConfigurationError(f"{variable}: ssl_cert_reqs={reqs!r} is not required, optional or none")
    hostname = found.get("ssl_check_hostname", "true").strip().lower()
    if hostname not in _BOOLEANS:
        raise ConfigurationError(f"{variable}: ssl_check_hostname={hostname!r} is not true or false")
    files = {name: found.get(name) or None for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")}
    for name, path in files.items():
        if path is not None and not os.path.isfile(path):
            raise ConfigurationError(f"{variable}: {name}={path!r}: no such file")
    bundle = environ.get("SSL_CERT_FILE") or None
    if files["ssl_ca_certs"] is None and bundle is not None and not os.path.isfile(bundle):
        raise ConfigurationError(
            f"SSL_CERT_FILE={bundle!r}: no such file (the CAs that {variable}'s Redis is checked against)"
        )
    return RedisTLS(
        cert_reqs=_CERT_REQS[reqs],
        check_hostname=_BOOLEANS[hostname],
        ca_certs=files["ssl_ca_certs"] or bundle,
        certfile=files["ssl_certfile"],
        keyfile=files["ssl_keyfile"],
    )


class CertificateRefused(ssl.SSLCertVerificationError):
    """A Redis server's certificate failed verification; `message` says which server, why, and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(1, message)
        self.message = message


def refusal(host: str, port: int, error: ssl.SSLCertVerificationError, ca_certs: str | None) -> str:
    """One line on a refused certificate: the server, OpenSSL's reason, and what would make it trusted."""
    reason = _reason(error)
    if getattr(error, "verify_code", None) in _NAME_MISMATCH:
        return (
            f"TLS certificate verification failed for Redis at {host}:{port}: {reason} "
            "(connect by a host name the certificate holds)"
        )
    trusted = f"the CA bundle {ca_certs}" if ca_certs else "the system CA store (SSL_CERT_FILE is not set)"
    return (
        f"TLS certificate verification failed for Redis at {host}:{port}: {reason}, checked against {trusted} "
        "(add the CA that issued the server's certificate to the bundle SSL_CERT_FILE names)"
    )


def _reason(error: ssl.SSLCertVerificationError) -> str:
    """OpenSSL's reason (`verify_message`, set on errors of a handshake), else the error's own text."""
    return str(getattr(error, "verify_message", None) or getattr(error, "reason", None) or error).rstrip(".")


class VerifiedSSLConnection(redis.SSLConnection):
    """redis-py's TLS connection, whose refusal of a certificate names the server, the reason and the CAs."""

    def _connect(self) -> socket.socket:
        try:
            return super()._connect()  # type: ignore[no-untyped-call,no-any-return]  # untyped in redis-py
        except ssl.SSLCertVerificationError as exc:
            raise CertificateRefused(refusal(self.host, self.port, exc, self.ca_certs)) from exc


def certificate_refusal(error: BaseException) -> str | None:
    """What a failed connection says of a refused certificate (looking through the errors it wraps), or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, CertificateRefused):
            return seen.message
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed: {_reason(seen)}"
        seen = seen.__cause__ or seen.__context__
    return None


def probe(url: str, variable: str) -> None:
    """Connects once to the Redis of a `rediss://` URL (no retries); nothing for a URL without TLS.

    Raises:
        BrokerUnavailable: naming the variable, when the server's certificate is refused. A server that is
            down or refuses the password is left to the caller's own retries.
    """
    base, tls = split_url(url, variable)
    if tls is None:
        return
    client = redis.Redis.from_url(
        base,
        socket_connect_timeout=PROBE_TIMEOUT,
        socket_timeout=PROBE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        **tls.client_options(),
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        refused = certificate_refusal(exc)
        if refused is not None:
            raise BrokerUnavailable(f"{variable}: {refused}") from None
    finally:
        client.close()
