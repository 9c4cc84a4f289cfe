"""Access tokens the simulated Entra issues and the simulated Graph checks: JWT-shaped, HMAC-signed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass

#: The audience of a Graph token, as Entra writes it.
GRAPH_AUDIENCE = "https://graph.microsoft.com"
#: Graph's application id, which Entra also accepts as the resource of a scope.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: Resources whose tokens Graph accepts: the global service, its app id and the national clouds.
GRAPH_RESOURCES = frozenset(
    {
        GRAPH_AUDIENCE,
        GRAPH_APP_ID,
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://canary.graph.microsoft.com",
    }
)
#: Clock skew Graph tolerates on `nbf`, in seconds.
CLOCK_SKEW = 300
_HEADER = {"typ": "JWT", "alg": "HS256", "kid": "teams-notify-simulator"}


class TokenError(Exception):
    """An access token Graph refuses; the message is Graph's."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What Graph needs from a verified token: who calls, for which tenant, until when."""

    tenant_id: str
    app_id: str
    audience: str
    issued_at: int
    expires_at: int
    token_id: str


def _b64encode(data: bytes) -> str:
    """Base64url without padding, as JWTs spell it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Inverse of `_b64encode`; raises ValueError on garbage."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64url") from exc


def audience_for(resource: str) -> str:
    """The `aud` Entra writes for a resource: Graph's canonical URL for any spelling of Graph."""
    trimmed = resource.rstrip("/")
    return GRAPH_AUDIENCE if trimmed.lower() in {GRAPH_AUDIENCE, GRAPH_APP_ID} else trimmed


class TokenAuthority:
    """Signs and verifies tokens with a key private to one simulator run."""

    def __init__(self, key: bytes | None = None) -> None:
        """A random key unless one is given (tests)."""
        self._key = key if key is not None else secrets.token_bytes(32)
        self._header = _b64encode(json.dumps(_HEADER, separators=(",", ":")).encode())

    def issue(self, *, tenant_id: str, app_id: str, audience: str, lifetime: int) -> tuple[str, TokenClaims]:
        """A signed token and its claims, valid from now for `lifetime` seconds."""
        now = int(time.time())
        claims = TokenClaims(tenant_id, app_id, audience, now, now + lifetime, str(uuid.uuid4()))
        payload = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": app_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}/{app_id}")),
            "roles": ["TeamsActivity.Send"],
            "tid": tenant_id,
            "ver": "1.0",
            "jti": claims.token_id,
        }
        signing_input = f"{self._header}.{_b64encode(json.dumps(payload, separators=(',', ':')).encode())}"
        return f"{signing_input}.{self._sign(signing_input)}", claims

    def verify(self, token: str) -> TokenClaims:
        """The claims of a token signed by this authority and in its lifetime; TokenError otherwise."""
        parts = token.split(".")
        if len(parts) != 3 or not all(parts) or not token.isascii():
            raise TokenError("CompactToken parsing failed with error code: 80049217")
        signing_input = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(signing_input), parts[2]):
            raise TokenError("Access token validation failure. Invalid signature.")
        try:
            payload = json.loads(_b64decode(parts[1]))
            claims = TokenClaims(
                tenant_id=str(payload["tid"]),
                app_id=str(payload["appid"]),
                audience=str(payload["aud"]),
                issued_at=int(payload["iat"]),
                expires_at=int(payload["exp"]),
                token_id=str(payload["jti"]),
            )
            not_before = int(payload["nbf"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError("Access token validation failure. Invalid token payload.") from exc
        now = time.time()
        if claims.expires_at <= now:
            raise TokenError("Lifetime validation failed, the token is expired.")
        if not_before > now + CLOCK_SKEW:
            raise TokenError("Lifetime validation failed, the token is not yet valid.")
        if claims.audience not in GRAPH_RESOURCES:
            raise TokenError("Access token validation failure. Invalid audience.")
        return claims

    def _sign(self, signing_input: str) -> str:
        """HMAC-SHA256 of the header and payload, base64url."""
        return _b64encode(hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest())
