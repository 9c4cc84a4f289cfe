"""Client assertions checked as Entra checks them: a JWT signed with a certificate registered for the app.

The signing certificate is found by the thumbprint in the assertion's header (`x5t#S256`, or the SHA-1
`x5t`) among the app's registered certificates. With no client configured at all (the simulator's open
mode) an app has none registered, and the certificate the assertion carries (`x5c`) stands in, so the
signature is still checked. Then: the signature (RS256 or PS256) verifies with that certificate's key,
`iss` and `sub` are the client id, `aud` is the token endpoint the client called, and now is within
`nbf`..`exp` (with Entra's five minutes of clock skew).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

#: Signing algorithms Entra accepts on a client assertion.
ALGORITHMS = ("RS256", "PS256")
#: Clock skew Entra tolerates on an assertion's `nbf` and `exp`, in seconds.
ASSERTION_SKEW = 300
_PORTAL_HINT = (
    "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'."
)


class AssertionRefused(Exception):
    """Entra's refusal of a client assertion: the AADSTS code and its text (always `invalid_client`, HTTP 401)."""

    def __init__(self, code: int, text: str) -> None:
        """Keeps Entra's code and text."""
        super().__init__(f"AADSTS{code}: {text}")
        self.code, self.text = code, text


def normalised_certificates(certificates: object) -> Mapping[str, tuple[str, ...]]:
    """Client id (lower-cased) to the PEM certificates registered for it (one PEM or a list), each checked."""
    if not isinstance(certificates, Mapping):
        raise ValueError("client_certificates must map client ids to PEM certificates")
    normalised: dict[str, tuple[str, ...]] = {}
    for client_id, pems in certificates.items():
        items = [pems] if isinstance(pems, str) else pems
        if not isinstance(client_id, str) or not client_id or not isinstance(items, Sequence) or not items:
            raise ValueError("client_certificates must map non-empty client ids to PEM certificates")
        for pem in items:
            if not isinstance(pem, str) or _certificate(pem) is None:
                raise ValueError(f"client_certificates: {client_id} has something that is not a PEM certificate")
        normalised[client_id.lower()] = tuple(items)
    return normalised


def certificate_thumbprint(pem: str) -> str:
    """A certificate's SHA-256 thumbprint in hex, as Entra's portal shows it."""
    return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex().upper()


def verify(
    assertion: str, *, client_id: str, registered: Sequence[str] | None, audiences: Collection[str], now: float
) -> None:
    """Checks a client assertion for the app; `registered` None means open mode (the assertion's own x5c).

    Raises:
        AssertionRefused: with Entra's code: 50027 malformed, 700027 unknown key, bad signature or expired
            key, 700021 another app's assertion, 700023 wrong audience, 700024 outside its time range.
    """
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise AssertionRefused(50027, "JWT token is invalid or malformed.") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise AssertionRefused(50027, f"Invalid JWT token. The signing algorithm '{algorithm}' is not supported.")
    by_sha256, thumbprint = "x5t#S256" in header, header.get("x5t#S256") or header.get("x5t")
    digest = _b64bytes(thumbprint) if isinstance(thumbprint, str) else None
    if not digest:
        raise AssertionRefused(50027, "Invalid JWT token. The token has no thumbprint (x5t#S256 or x5t) header.")
    candidates = list(registered) if registered is not None else _carried(header)
    certificate = next(
        (c for c in map(_certificate, candidates) if c is not None and _digest(c, by_sha256) == digest),
        None,
    )
    hint = _PORTAL_HINT.format(client_id)
    shown = digest.hex().upper()
    if certificate is None:
        text = f"[Reason - The key was not found., Thumbprint of key used by client: '{shown}', {hint}]"
        raise AssertionRefused(700027, f"Client assertion contains an invalid signature. {text}")
    if certificate.not_valid_after_utc.timestamp() < now:
        text = f"[Reason - The key used is expired., Thumbprint of key used by client: '{shown}', {hint}]"
        raise AssertionRefused(700027, f"Client assertion contains an invalid signature. {text}")
    claims = _verified_claims(assertion, certificate, algorithm, shown)
    _check_claims(claims, client_id=client_id, audiences=audiences, now=now)


def _verified_claims(assertion: str, certificate: x509.Certificate, algorithm: str, shown: str) -> dict[str, Any]:
    """The assertion's claims, once its signature verifies with the certificate's key."""
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise AssertionRefused(700027, "Client assertion contains an invalid signature. [Reason - Not an RSA key.]")
    # Only the signature here: the claims are checked below, with Entra's codes and its clock skew.
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key=key,
            algorithms=[algorithm],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        found = (
            f"Found key 'Start={certificate.not_valid_before_utc:%m/%d/%Y %H:%M:%S}, "
            f"End={certificate.not_valid_after_utc:%m/%d/%Y %H:%M:%S}'"
        )
        text = (
            "[Reason - The provided signature value did not match the expected signature value., "
            f"Thumbprint of key used by client: '{shown}', {found}]"
        )
        raise AssertionRefused(700027, f"Client assertion contains an invalid signature. {text}") from None
    except jwt.PyJWTError:
        raise AssertionRefused(50027, "JWT token is invalid or malformed.") from None
    return claims


def _check_claims(claims: dict[str, Any], *, client_id: str, audiences: Collection[str], now: float) -> None:
    """Issuer and subject are the app, the audience is the token endpoint, now is in the assertion's time range."""
    for claim in ("iss", "sub"):
        if str(claims.get(claim, "")).lower() != client_id.lower():
            raise AssertionRefused(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
                "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
            )
    audience = claims.get("aud")
    given = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(a, str) and a.rstrip("/").lower() in audiences for a in given):
        raise AssertionRefused(
            700023,
            "Client assertion audience claim does not match Realm issuer. Review the documentation at "
            "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        )
    try:
        expires, not_before = float(claims["exp"]), float(claims.get("nbf", claims["exp"] - 600))
    except (KeyError, TypeError, ValueError):
        raise AssertionRefused(50027, "JWT token is invalid or malformed. It has no valid 'exp' claim.") from None
    if not not_before - ASSERTION_SKEW <= now <= expires + ASSERTION_SKEW:
        raise AssertionRefused(
            700024,
            f"Client assertion is not within its valid time range. Current time: {_iso(now)}, assertion valid "
            f"from {_iso(not_before)}, expiry time of assertion {_iso(expires)}. Review the documentation at "
            "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        )


def _carried(header: dict[str, Any]) -> list[str]:
    """The certificates an assertion carries in its `x5c` header, as PEM."""
    chain = header.get("x5c")
    if isinstance(chain, str):
        chain = [chain]
    if not isinstance(chain, list):
        return []
    pems = []
    for item in chain:
        if not isinstance(item, str):
            continue
        try:
            der = base64.b64decode("".join(item.split()), validate=True)  # MSAL keeps the PEM's line breaks
            pems.append(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode())
        except (binascii.Error, ValueError):
            continue
    return pems


def _certificate(pem: str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None


def _digest(certificate: x509.Certificate, sha256: bool) -> bytes:
    """The certificate's thumbprint: the SHA-256 (x5t#S256) or SHA-1 (x5t, by definition) digest of its DER."""
    return certificate.fingerprint(hashes.SHA256() if sha256 else hashes.SHA1())


def _b64bytes(text: str) -> bytes | None:
    """A header thumbprint's bytes: base64url as the RFC says, padded or not (MSAL pads), or plain base64."""
    bare = text.replace("+", "-").replace("/", "_").rstrip("=")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except (binascii.Error, ValueError):
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")
