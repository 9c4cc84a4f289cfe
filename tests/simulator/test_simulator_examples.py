"""Every v1.0 example body in shared/reference/ is accepted with Graph's status; the beta one is refused.

The bodies come from tests/fixtures/reference_examples.json (copied verbatim from Microsoft's docs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from .helpers import CHAT, Graph

FIXTURE = Path(__file__).parents[1] / "fixtures" / "reference_examples.json"
EXAMPLES = [e for e in json.loads(FIXTURE.read_text()) if e["v1"]]
CHAT_PATH = "/chats/{}/sendActivityNotification"
PATHS = {
    "user": "/users/{}/teamwork/sendActivityNotification",
    "chat": CHAT_PATH,
    "team": "/teams/{}/sendActivityNotification",
    "recipients": "/teamwork/sendActivityNotificationToRecipients",
}
BETA_001_TEXT = """{
    "topic": {
        "type": "graphResource",
        "value": "https://graph.microsoft.com/beta/chats/avc@thread.skype/messages/123456",
    },
    "activityType": "messageLiked",
    "chainId": 123456,
    "previewText": "message text here",
    "templateParameters": [{
        "name": "numberOfLikes",
        "value": "6"
    }]
}"""


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["source"] for e in EXAMPLES])
def test_each_v1_example_body_is_accepted_with_graphs_status(graph: Graph, example: dict[str, Any]) -> None:
    path = PATHS[example["endpoint"]].format(quote(example["target"] or "", safe=""))
    response = graph.post(path, example["body"])
    assert response.status_code == (202 if example["endpoint"] == "recipients" else 204), response.text
    assert response.content == b""


def test_the_beta_chat_example_is_refused_as_printed(graph: Graph) -> None:
    response = graph.http.post(
        "/v1.0/chats/avc@thread.skype/sendActivityNotification",
        content=BETA_001_TEXT,
        headers={"Authorization": f"Bearer {graph.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_the_beta_chat_example_is_refused_even_with_its_json_and_chat_id_repaired(graph: Graph) -> None:
    body = {
        "topic": {
            "type": "graphResource",
            "value": "https://graph.microsoft.com/beta/chats/avc@thread.skype/messages/1",
        },
        "activityType": "messageLiked",
        "chainId": 123456,
        "previewText": "message text here",
        "templateParameters": [{"name": "numberOfLikes", "value": "6"}],
    }
    response = graph.post(CHAT_PATH.format(CHAT), body)
    assert response.status_code == 400
    assert "topic.type" in response.json()["error"]["message"]
