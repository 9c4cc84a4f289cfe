"""One Graph request's life in `Delivery`: the sends and what is recorded of them, and the claims that send nothing.

Each test plays the scheduler's part (`World.hand`: the request made ready and handed out), then runs the send
task's `Delivery.deliver` as a worker would; the world is in `tests.unit.delivery_world`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from producers import Notifier, keys
from tests.unit.delivery_world import World, graph_error, world_of
from tests.unit.notification_examples import CHAT, TEAM, USER, bulk_body, chat_body, team_body, user_body
from tests.unit.notification_examples import user_ids as ids_of
from worker.delivery import Deferred, Sent, Skipped

__all__ = ["world_of"]  # the fixture, from the shared world of the delivery tests


def test_a_bulk_jobs_requests_are_each_sent_once_with_at_most_100_recipients(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202))
    body = bulk_body(250)
    job_id = world.notifier.notify_recipients(body)

    results = world.deliver_all(job_id)

    assert all(isinstance(result, Sent) for result in results)
    assert [r.url.path for r in world.graph.requests] == ["/v1.0/teamwork/sendActivityNotificationToRecipients"] * 3
    sent = world.graph.bodies()
    assert [len(b["recipients"]) for b in sent] == [100, 100, 50]
    assert [r["userId"] for b in sent for r in b["recipients"]] == ids_of(250)
    recipients = body.pop("recipients")
    for index, request_body in enumerate(sent):
        assert request_body == {**body, "recipients": recipients[index * 100 : (index + 1) * 100]}


def test_graphs_request_id_of_each_request_is_kept_with_the_job(world_of: Callable[..., World]) -> None:
    world = world_of(httpx.Response(202, headers={"request-id": "4b1f0c9e-graph-request-id"}))
    job_id = world.notifier.notify_recipients(bulk_body(150))

    world.deliver_all(job_id)

    assert world.jobs.request_ids(job_id) == {0: "4b1f0c9e-graph-request-id", 1: "4b1f0c9e-graph-request-id"}


def test_a_bulk_job_is_sending_until_all_its_requests_are_accepted_then_completed(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(202))
    job_id = world.notifier.notify_recipients(bulk_body(250))

    world.deliver(job_id, 0)
    assert world.notifier.status(job_id)["state"] == "sending"
    world.deliver(job_id, 1)
    world.deliver(job_id, 2)

    status = world.notifier.status(job_id)
    assert status["state"] == "completed"
    assert (status["requests"]["sent"], status["requests"]["pending"]) == (3, 0)
    assert (status["recipients"]["sent"], status["recipients"]["pending"]) == (250, 0)
    assert world.where(job_id) == set()


@pytest.mark.parametrize(
    ("notify", "path", "body"),
    [
        (
            lambda n: n.notify_user(USER, user_body()),
            f"/v1.0/users/{USER}/teamwork/sendActivityNotification",
            user_body(),
        ),
        (
            lambda n: n.notify_chat(CHAT, chat_body()),
            "/v1.0/chats/19%3Ad65713bc498c4a428c71ef9353e6ce20%40thread.v2/sendActivityNotification",
            chat_body(),
        ),
        (lambda n: n.notify_team(TEAM, team_body()), f"/v1.0/teams/{TEAM}/sendActivityNotification", team_body()),
    ],
)
def test_a_single_send_posts_its_body_to_its_path(
    world_of: Callable[..., World], notify: Callable[[Notifier], str], path: str, body: dict[str, Any]
) -> None:
    world = world_of(httpx.Response(204))
    job_id = notify(world.notifier)

    (result,) = world.deliver_all(job_id)

    assert isinstance(result, Sent)
    (request,) = world.graph.requests
    assert request.url.raw_path.decode() == path
    assert json.loads(request.content) == body
    assert world.notifier.status(job_id)["state"] == "completed"


def test_a_claim_while_paused_sends_nothing_and_after_resume_the_request_is_sent(
    world_of: Callable[..., World],
) -> None:
    world = world_of(httpx.Response(204))
    job_id = world.notifier.notify_user(USER, user_body())
    world.store.set(keys.paused(), "1")

    assert world.deliver(job_id) == Skipped("paused")
    assert world.graph.requests == []
    assert world.where(job_id) == {"lane"}

    world.store.delete(keys.paused())
    assert isinstance(world.deliver(job_id), Sent)
    assert len(world.graph.requests) == 1


def test_a_request_in_flight_when_its_job_is_cancelled_is_cancelled_if_it_comes_back(
    world_of: Callable[..., World],
) -> None:
    def cancel_then_fail(request: httpx.Request) -> httpx.Response:
        world.notifier.cancel(job_id)  # while the request is in flight
        return graph_error(503, "ServiceNotAvailable", "Try later")

    world = world_of(cancel_then_fail)
    job_id = world.notifier.notify_user(USER, user_body())

    assert isinstance(world.deliver(job_id), Deferred)
    assert world.deliver(job_id) == Skipped("cancelled")

    assert len(world.graph.requests) == 1
    status = world.notifier.status(job_id)
    assert (status["state"], status["requests"]["cancelled"], status["requests"]["pending"]) == ("cancelled", 1, 0)


@pytest.mark.parametrize(("job_id", "index"), [("no-such-job", 0), (None, 1), (None, -1)])
def test_a_missing_job_or_request_is_skipped_and_let_go(
    world_of: Callable[..., World], job_id: str | None, index: int
) -> None:
    world = world_of(httpx.Response(204))
    job_id = job_id or world.notifier.notify_user(USER, user_body())

    assert isinstance(world.deliver(job_id, index), Skipped)
    assert world.graph.requests == []
    assert world.where(job_id, index) == set()
