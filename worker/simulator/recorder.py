"""What the simulated Graph accepted and answered, kept compact: raw bodies, counters updated as they happen."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Record:
    """One accepted send; `body` holds the request's JSON bytes exactly as received."""

    endpoint: str
    path: str
    target: str | None
    tenant_id: str
    app_id: str
    body: bytes
    request_id: str
    client_request_id: str
    status: int
    received_at: str
    recipients: int

    def to_json(self) -> bytes:
        """The record as a JSON object, splicing in the raw body rather than re-encoding it."""
        meta = json.dumps(
            {
                "endpoint": self.endpoint,
                "path": self.path,
                "target": self.target,
                "tenant_id": self.tenant_id,
                "app_id": self.app_id,
                "request_id": self.request_id,
                "client_request_id": self.client_request_id,
                "status": self.status,
                "received_at": self.received_at,
                "recipients": self.recipients,
            },
            separators=(",", ":"),
        ).encode()
        return meta[:-1] + b',"body":' + self.body + b"}"


class Recorder:
    """Accepted requests in arrival order, plus response and token counters for the stats endpoint."""

    records: list[Record]
    responses: Counter[int]

    def __init__(self) -> None:
        """Empty."""
        self.reset()

    def reset(self) -> None:
        """Forgets everything."""
        self.records = []
        self.responses = Counter()
        self.accepted_recipients = 0
        self.max_recipients_in_request = 0
        self.tokens_issued = 0
        self.tokens_by_tenant: Counter[str] = Counter()
        self.token_errors = 0
        self.token_requests_held = 0
        self.dropped = 0

    def count_response(self, status: int) -> None:
        """Counts one Graph response by status."""
        self.responses[status] += 1

    def accept(self, record: Record) -> None:
        """Keeps an accepted request and counts it."""
        self.records.append(record)
        self.accepted_recipients += record.recipients
        self.max_recipients_in_request = max(self.max_recipients_in_request, record.recipients)

    def stats(self) -> dict[str, object]:
        """The counters as the stats endpoint shows them."""
        return {
            "responses": {str(status): count for status, count in sorted(self.responses.items())},
            "accepted_requests": len(self.records),
            "accepted_recipients": self.accepted_recipients,
            "tokens_issued": self.tokens_issued,
            "tokens_by_tenant": dict(sorted(self.tokens_by_tenant.items())),
            "token_errors": self.token_errors,
            "token_requests_held": self.token_requests_held,
            "max_recipients_in_request": self.max_recipients_in_request,
            "dropped_connections": self.dropped,
        }

    def records_json(self, *, endpoint: str | None = None, offset: int = 0, limit: int | None = None) -> bytes:
        """A JSON array of records, optionally of one endpoint and paged (offset into the filtered list)."""
        selected = self.records if endpoint is None else [r for r in self.records if r.endpoint == endpoint]
        end = None if limit is None else offset + limit
        return b"[" + b",".join(record.to_json() for record in selected[offset:end]) + b"]"
