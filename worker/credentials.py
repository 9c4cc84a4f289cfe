"""The app's credential with Entra: a client secret, or a certificate whose private key signs client assertions.

A certificate comes as one PEM file holding the private key (encrypted or not) and its X.509 certificate
(`TEAMS_NOTIFY_CLIENT_CERTIFICATE`, `TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD`). MSAL signs each assertion
with it and names the certificate by its SHA-256 thumbprint (`x5t#S256`). Neither the secret nor the key
appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from producers.errors import ConfigurationError

CERTIFICATE_VARIABLE = "TEAMS_NOTIFY_CLIENT_CERTIFICATE"
PASSWORD_VARIABLE = "TEAMS_NOTIFY_CLIENT_CERTIFICATE_PASSWORD"
#: Entra signs assertions with RSA keys only; shorter keys than this it refuses to register.
MIN_RSA_BITS = 2048

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class ClientCredential:
    """A client secret, or a certificate (its private key, decrypted, in memory only) and its thumbprints."""

    client_id: str
    secret: str | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)
    certificate_pem: str | None = None
    thumbprint_sha256: str | None = None
    source: str | None = None

    @property
    def is_certificate(self) -> bool:
        """True when assertions are signed with a certificate rather than a secret sent."""
        return self.private_key_pem is not None

    def msal_credential(self) -> str | dict[str, Any]:
        """What `msal.ConfidentialClientApplication(client_credential=...)` takes.

        With the certificate itself (not a SHA-1 thumbprint), msal names it by its SHA-256 thumbprint and
        signs with PS256.
        """
        if self.private_key_pem is not None:
            return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}
        assert self.secret is not None  # one of the two is always set (from_secret, from_certificate_file)
        return self.secret

    def key_material(self) -> bytes:
        """Secret bytes every worker with this credential shares, and Redis never sees: the token cache's key."""
        if self.private_key_pem is not None:
            key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
            return key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        assert self.secret is not None
        return self.secret.encode()

    def describe(self) -> str:
        """Which credential this is, fit for a log line: `client secret` or the certificate's thumbprint."""
        if self.is_certificate:
            return f"certificate {self.thumbprint_sha256} ({self.source})"
        return "client secret"


def from_secret(client_id: str, secret: str) -> ClientCredential:
    """The credential of a client secret."""
    return ClientCredential(client_id, secret=secret)


def from_certificate_file(client_id: str, path: str, password: str | None) -> ClientCredential:
    """The certificate credential in a PEM file: its private key and the certificate that goes with it.

    Raises:
        ConfigurationError: the file cannot be read, lacks the key or the certificate, the password is
            wrong or missing, the key is not RSA, or the certificate is not the key's.
    """
    name = f"{CERTIFICATE_VARIABLE}={path!r}"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read it: {exc.strerror or exc}") from None
    blocks = [(match.group(1).decode(), match.group(0)) for match in _PEM_BLOCK.finditer(data)]
    keys = [blob for kind, blob in blocks if kind.endswith("PRIVATE KEY")]
    certificates = [blob for kind, blob in blocks if kind in ("CERTIFICATE", "TRUSTED CERTIFICATE")]
    if not keys:
        raise ConfigurationError(f"{name} holds no PEM private key (it needs the key and its certificate)")
    if not certificates:
        raise ConfigurationError(f"{name} holds no PEM X.509 certificate (it needs the key and its certificate)")
    key = _private_key(name, keys[0], password)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    certificate = next((c for c in map(_certificate, certificates) if c and _spki(c) == public), None)
    if certificate is None:
        raise ConfigurationError(f"{name}: no certificate in it goes with its private key")
    unencrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ClientCredential(
        client_id,
        private_key_pem=unencrypted.decode("ascii"),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        thumbprint_sha256=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        source=path,
    )


def _private_key(name: str, blob: bytes, password: str | None) -> rsa.RSAPrivateKey:
    """The RSA key in a PEM block, decrypted with the password when it is encrypted."""
    encrypted = b"ENCRYPTED" in blob.split(b"\n", 2)[0] or b"Proc-Type: 4,ENCRYPTED" in blob
    if encrypted and not password:
        raise ConfigurationError(f"{name}: its private key is encrypted and {PASSWORD_VARIABLE} is not set")
    try:
        key = serialization.load_pem_private_key(blob, password=password.encode() if encrypted and password else None)
    except (ValueError, TypeError):
        if encrypted:
            raise ConfigurationError(f"{PASSWORD_VARIABLE} does not decrypt the private key in {name}") from None
        raise ConfigurationError(f"{name}: its private key cannot be read") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"{name}: Entra signs client assertions with RSA keys; this key is not one")
    if key.key_size < MIN_RSA_BITS:
        raise ConfigurationError(f"{name}: an RSA key of {key.key_size} bits is too short for Entra (2048 at least)")
    return key


def _certificate(blob: bytes) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(blob)
    except ValueError:
        return None


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
