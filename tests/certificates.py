"""App certificates and client assertions for the tests: an RSA key, its self-signed X.509 certificate, JWTs."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class AppCertificate:
    """A private key and its certificate, as an Entra app registration would hold the certificate."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def x5t(self, sha256: bool = True) -> str:
        """The thumbprint as a JWT header carries it."""
        digest = self.certificate.fingerprint(hashes.SHA256() if sha256 else hashes.SHA1())
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def write(self, path: Path, password: str | None = None) -> Path:
        """A PEM file with the key (encrypted with the password, if given) followed by the certificate."""
        encryption = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
        )
        key = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        path.write_bytes(key + self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def assertion(
        self,
        *,
        client_id: str,
        audience: str,
        algorithm: str = "PS256",
        sha256: bool = True,
        lifetime: float = 600,
        issued: float | None = None,
        signer: rsa.RSAPrivateKey | None = None,
        **claims: Any,
    ) -> str:
        """A client assertion naming this certificate, signed by its key (or by `signer`)."""
        now = time.time() if issued is None else issued
        payload = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": int(now),
            "iat": int(now),
            "exp": int(now + lifetime),
            **claims,
        }
        header = {"x5t#S256" if sha256 else "x5t": self.x5t(sha256)}
        return jwt.encode(payload, signer or self.key, algorithm=algorithm, headers=header)


def make_certificate(name: str = "teams-notify test app", *, expired: bool = False) -> AppCertificate:
    """A fresh 2048-bit RSA key and a self-signed certificate for it (valid a year, or expired yesterday)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=30), now - timedelta(days=1)) if expired else (now, now + timedelta(days=365))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return AppCertificate(key, certificate)


@cache
def shared_certificate(name: str) -> AppCertificate:
    """One certificate per name for the whole test run (RSA key generation takes a moment)."""
    return make_certificate(name)
