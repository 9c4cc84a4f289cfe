"""Shared constants and helpers of the simulator's tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "a3111f15-658e-457c-9689-fd20fe907330"
SECRET = "not-a-real-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
USER = "569363e2-4e49-4661-87f2-16f245c5d66a"
TEAM = "7155e3c8-175e-4311-97ef-572edc3aa3db"
CHAT = "19:d65713bc498c4a428c71ef9353e6ce20@thread.v2"

# Every runtime knob back to a quiet default: no throttling, no faults, tokens of Entra's usual lifetime.
QUIET: dict[str, object] = {
    "rate_limits": "off",
    "token_lifetime": 3599,
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "retry_after_decimal": False,
    "error_rate": 0,
    "error_statuses": [429, 500, 502, 503, 504],
    "fault_retry_after": 1,
    "drop_rate": 0,
    "conflict_app_ids": [],
    "conflict_user_ids": [],
    "clients": {},
    "seed": None,
}


def text_topic_body(**extra: Any) -> dict[str, Any]:
    """A minimal valid body (text topic) plus whatever the test adds."""
    body: dict[str, Any] = {
        "topic": {"source": "text", "value": "Deployments", "webUrl": "https://teams.microsoft.com/l/message/1"},
        "activityType": "taskCreated",
        "previewText": {"content": "New Task Created"},
    }
    body.update(extra)
    return body


def aad_user(user_id: str = USER) -> dict[str, str]:
    """An aadUserNotificationRecipient."""
    return {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": user_id}


def fetch_token(http: httpx.Client, tenant: str = TENANT, client_id: str = CLIENT_ID, secret: str = SECRET) -> str:
    """A client-credentials token from the simulated Entra."""
    response = http.post(
        f"/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": GRAPH_SCOPE,
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@dataclass
class Graph:
    """Posts to the simulated Graph with a bearer token."""

    http: httpx.Client
    token: str
    headers: dict[str, str] = field(default_factory=dict)

    def post(self, path: str, body: Any, token: str | None = None, **headers: str) -> httpx.Response:
        """POST `body` as JSON to `/v1.0{path}`."""
        all_headers = {"Authorization": f"Bearer {token or self.token}", **self.headers, **headers}
        return self.http.post(f"/v1.0{path}", json=body, headers=all_headers)

    def user(self, user_id: str, body: Any, **headers: str) -> httpx.Response:
        """Send to one user (percent-encoding done by httpx only where needed)."""
        return self.post(f"/users/{user_id}/teamwork/sendActivityNotification", body, **headers)

    def bulk(self, body: Any, **headers: str) -> httpx.Response:
        """Send in bulk."""
        return self.post("/teamwork/sendActivityNotificationToRecipients", body, **headers)
