"""The Graph client over httpx.MockTransport: what it sends, and how it reads each of Graph's answers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from producers.models import Endpoint
from worker.errors import (
    Conflict,
    GraphError,
    PermanentGraphError,
    TeamsNotifyError,
    Throttled,
    TokenTooShortLived,
    TransientGraphError,
    Unauthorized,
)
from worker.graph import GraphClient, GraphResult

BASE = "https://graph.microsoft.com/v1.0"
BODY = {"topic": {"source": "text", "value": "x", "webUrl": "https://teams.microsoft.com/l/x"}}
CONFLICT = (
    "Found multiple applications with the same AAD App ID 'a3111f15-658e-457c-9689-fd20fe907330' - "
    "a Teams Application ID is required to resolve which application is correct."
)


def graph_error(code: str, message: str, request_id: str = "req-from-body") -> dict[str, Any]:
    """An error body as Graph writes it."""
    inner = {"request-id": request_id, "client-request-id": "c", "date": "2026-11-24T08:00:00"}
    return {"error": {"code": code, "message": message, "innerError": inner}}


class Recorder:
    """A MockTransport handler that answers from a script and keeps every request it saw."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer


def client_for(handler: Callable[[httpx.Request], httpx.Response], base: str = BASE) -> GraphClient:
    return GraphClient(base, transport=httpx.MockTransport(handler))


def failure(status: int, headers: dict[str, str] | None = None, body: Any = None) -> GraphError:
    graph = client_for(lambda request: httpx.Response(status, headers=headers, json=body))
    with pytest.raises(GraphError) as caught:
        graph.post("/teamwork/sendActivityNotificationToRecipients", BODY, "t")
    return caught.value


@pytest.mark.parametrize("base", [BASE, BASE + "/"])
@pytest.mark.parametrize(
    ("target", "endpoint"),
    [
        ("jacob@contoso.com", Endpoint.USER),
        ("19:d65713bc498c4a428c71ef9353e6ce20@thread.v2", Endpoint.CHAT),
        ("e8bece96-d393-4b9b-b8da-69cedef1a7e7", Endpoint.TEAM),
        (None, Endpoint.RECIPIENTS),
    ],
)
def test_a_path_is_joined_under_v1_with_its_id_still_percent_encoded(
    base: str, target: str | None, endpoint: Endpoint
) -> None:
    recorder = Recorder(httpx.Response(204))
    path = endpoint.path(target)

    client_for(recorder, base).post(path, BODY, "t")

    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.host == "graph.microsoft.com"
    assert request.url.raw_path.decode() == "/v1.0" + path
    assert request.url.query == b""


def test_the_body_is_sent_as_json() -> None:
    recorder = Recorder(httpx.Response(202))

    client_for(recorder).post("/teamwork/sendActivityNotificationToRecipients", BODY, "t")

    (request,) = recorder.requests
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == BODY


def test_each_request_carries_the_bearer_token_and_a_fresh_client_request_id() -> None:
    recorder = Recorder(httpx.Response(204))
    graph = client_for(recorder)

    results = [graph.post("/users/u/teamwork/sendActivityNotification", BODY, f"token-{i}") for i in range(3)]

    assert [r.headers["Authorization"] for r in recorder.requests] == [
        "Bearer token-0",
        "Bearer token-1",
        "Bearer token-2",
    ]
    ids = [r.headers["client-request-id"] for r in recorder.requests]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i) for i in ids)
    assert [result.client_request_id for result in results] == ids


@pytest.mark.parametrize("status", [202, 204])
def test_a_success_is_a_result_with_graphs_request_id(status: int) -> None:
    graph = client_for(lambda request: httpx.Response(status, headers={"request-id": "graph-req-1"}))

    result = graph.post("/teams/x/sendActivityNotification", BODY, "t")

    assert isinstance(result, GraphResult)
    assert (result.status, result.request_id) == (status, "graph-req-1")


def test_a_429_with_a_decimal_retry_after_is_throttled_for_that_long() -> None:
    error = failure(429, {"Retry-After": "1.5"}, graph_error("TooManyRequests", "Too many requests"))

    assert isinstance(error, Throttled)
    assert isinstance(error, TransientGraphError)
    assert error.retry_after == 1.5
    assert (error.status, error.code) == (429, "TooManyRequests")


def test_a_retry_after_given_as_an_http_date_is_read_as_seconds_from_now() -> None:
    error = failure(429, {"Retry-After": formatdate(time.time() + 30, usegmt=True)})

    assert isinstance(error, Throttled)
    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 31


def test_a_503_is_throttled_with_its_retry_after() -> None:
    error = failure(503, {"Retry-After": "7"}, graph_error("ServiceNotAvailable", "Try later"))

    assert isinstance(error, Throttled)
    assert (error.status, error.retry_after) == (503, 7.0)


def test_a_429_without_retry_after_is_throttled_without_a_wait() -> None:
    error = failure(429)

    assert isinstance(error, Throttled)
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_a_server_error_is_transient(status: int) -> None:
    error = failure(status, body=graph_error("InternalServerError", "Something went wrong"))

    assert type(error) is TransientGraphError
    assert error.status == status


def test_a_409_is_a_conflict_carrying_graphs_message() -> None:
    error = failure(409, {"request-id": "r-409"}, graph_error("Conflict", CONFLICT))

    assert isinstance(error, Conflict)
    assert isinstance(error, PermanentGraphError)
    assert not isinstance(error, TransientGraphError)
    assert error.graph_message == CONFLICT
    assert CONFLICT in str(error)
    assert (error.status, error.code, error.request_id) == (409, "Conflict", "r-409")


def test_a_412_means_the_token_was_too_short_lived() -> None:
    error = failure(412, body=graph_error("PreconditionFailed", "Token expires within 45 minutes"))

    assert isinstance(error, TokenTooShortLived)
    assert isinstance(error, PermanentGraphError)


def test_a_401_is_unauthorized_and_worth_a_fresh_token() -> None:
    error = failure(401, body=graph_error("InvalidAuthenticationToken", "Access token has expired"))

    assert isinstance(error, Unauthorized)
    assert isinstance(error, TransientGraphError)


@pytest.mark.parametrize("status", [400, 403, 404])
def test_a_client_error_is_permanent_with_graphs_code_and_message(status: int) -> None:
    error = failure(status, body=graph_error("BadRequest", "Invalid recipient", request_id="r-in-body"))

    assert type(error) is PermanentGraphError
    assert isinstance(error, TeamsNotifyError)
    assert (error.status, error.code, error.graph_message) == (status, "BadRequest", "Invalid recipient")
    assert error.request_id == "r-in-body"
    assert str(error) == f"HTTP {status} BadRequest: Invalid recipient"


def test_graphs_request_id_header_is_preferred_to_the_body() -> None:
    error = failure(400, {"request-id": "r-header"}, graph_error("BadRequest", "x", request_id="r-body"))

    assert error.request_id == "r-header"


@pytest.mark.parametrize(
    "content", [b"<html>502 Bad Gateway</html>", b"", b"[1, 2]", b'{"error": "flat"}', b'{"error": {"code": 7}}']
)
def test_an_error_body_graph_did_not_write_still_gives_a_typed_error(content: bytes) -> None:
    graph = client_for(lambda request: httpx.Response(400, content=content, headers={"Content-Type": "text/html"}))

    with pytest.raises(PermanentGraphError) as caught:
        graph.post("/teams/x/sendActivityNotification", BODY, "t")

    assert caught.value.status == 400
    assert caught.value.code is None
    assert caught.value.graph_message


def test_a_dropped_connection_is_transient_and_names_no_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransientGraphError) as caught:
        client_for(handler).post("/teams/x/sendActivityNotification", BODY, "t")

    assert caught.value.status is None
    assert caught.value.client_request_id
    assert "ConnectError" in str(caught.value)
    assert str(caught.value).startswith("no response")


def test_a_read_timeout_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("", request=request)

    with pytest.raises(TransientGraphError, match="ReadTimeout"):
        client_for(handler).post("/teams/x/sendActivityNotification", BODY, "t")


def test_the_token_never_appears_in_an_error() -> None:
    graph = client_for(lambda request: httpx.Response(401, json=graph_error("InvalidAuthenticationToken", "bad")))
    with pytest.raises(Unauthorized) as caught:
        graph.post("/teams/x/sendActivityNotification", BODY, "eyJ0eXAiOiJKV1Qi.secret-token")
    assert "secret-token" not in str(caught.value)
    assert "secret-token" not in repr(caught.value)
