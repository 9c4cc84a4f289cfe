"""The simulator's own CA and server certificate, kept in the state directory so restarts keep clients' trust."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certifi
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

#: Names the server certificate is always valid for.
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
#: A CA closer than this to expiry is replaced rather than reused.
MIN_CA_VALIDITY = timedelta(days=30)

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
BUNDLE_FILE = "bundle.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
_LOCK_FILE = ".certs.lock"


@dataclass(frozen=True)
class CertificatePaths:
    """Where the CA, the trust bundle and the server's certificate and key were written."""

    ca: Path
    bundle: Path
    server_cert: Path
    server_key: Path


def ensure_certificates(state_dir: Path, extra_hostnames: Iterable[str] = ()) -> CertificatePaths:
    """Reuses (or makes) the CA, issues a fresh server certificate and writes the trust bundle."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir / _LOCK_FILE):
        ca = _load_ca(state_dir) or _new_ca(state_dir)
        hostnames = list(dict.fromkeys([*DEFAULT_HOSTNAMES, *extra_hostnames]))
        leaf = ca.issue_cert(*hostnames, common_name="teams-notify simulator")
        paths = CertificatePaths(
            ca=state_dir / CA_FILE,
            bundle=state_dir / BUNDLE_FILE,
            server_cert=state_dir / SERVER_CERT_FILE,
            server_key=state_dir / SERVER_KEY_FILE,
        )
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        _write_atomically(paths.server_cert, chain)
        _write_atomically(paths.server_key, leaf.private_key_pem.bytes(), private=True)
        bundle = Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n\n" + ca.cert_pem.bytes()
        _write_atomically(paths.bundle, bundle)
        return paths


def _load_ca(state_dir: Path) -> trustme.CA | None:
    """The CA already in the state directory, if it is whole, matches its key and is not about to expire."""
    cert_path, key_path = state_dir / CA_FILE, state_dir / CA_KEY_FILE
    try:
        cert_bytes, key_bytes = cert_path.read_bytes(), key_path.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_bytes)
        key = load_pem_private_key(key_bytes, password=None)
    except (OSError, ValueError, TypeError):
        return None
    raw = Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*raw) != key.public_key().public_bytes(*raw):
        return None
    if cert.not_valid_after_utc - datetime.now(UTC) < MIN_CA_VALIDITY:
        return None
    ca: trustme.CA = trustme.CA.from_pem(cert_bytes, key_bytes)
    return ca


def _new_ca(state_dir: Path) -> trustme.CA:
    """Makes a CA and writes it: the certificate for clients to trust, the key readable by us only."""
    ca: trustme.CA = trustme.CA(organization_name="teams-notify", organization_unit_name="simulator CA")
    _write_atomically(state_dir / CA_KEY_FILE, ca.private_key_pem.bytes(), private=True)
    _write_atomically(state_dir / CA_FILE, ca.cert_pem.bytes())
    return ca


def _write_atomically(path: Path, data: bytes, *, private: bool = False) -> None:
    """Writes to a temporary file and renames it, so readers never see half a certificate."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialises CA creation between simulators sharing a state directory."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
