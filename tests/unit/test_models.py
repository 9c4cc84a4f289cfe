"""The Graph body models: Microsoft's examples pass untouched, anything Graph would refuse is refused by name."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from producers.errors import InvalidNotification, TeamsNotifyError
from producers.models import (
    MAX_PREVIEW_BYTES,
    MAX_RECIPIENTS_PER_REQUEST,
    MAX_URL_LENGTH,
    PREVIEW_SHOWN,
    Endpoint,
    RecipientsNotification,
    TeamNotification,
    parse_body,
)
from tests.unit.notification_examples import (
    AAD_USER,
    BETA_EXAMPLES,
    CHAT,
    INVALID,
    REFERENCE_EXAMPLES,
    TEAM,
    UPN,
    USER,
    V1_EXAMPLES,
    Invalid,
    aad_user,
    bulk_body,
    common,
    user_ids,
)


def canonical(body: Any) -> str:
    """A body as JSON with sorted keys: equal only when keys, values and JSON types are all the same."""
    return json.dumps(body, sort_keys=True)


def names_field(exc: InvalidNotification, case: Invalid) -> bool:
    """True when the error's field, or its message, names the offending field."""
    names = [case.field] if case.or_field is None else [case.field, case.or_field]
    return any(exc.field == name or name in str(exc) for name in names)


def test_the_fixture_holds_every_documented_request_body() -> None:
    sources = [example["source"] for example in REFERENCE_EXAMPLES]
    assert len(sources) == len(set(sources)) == 20
    assert {example["endpoint"] for example in REFERENCE_EXAMPLES} == {"chat", "team", "recipients"}
    assert len(BETA_EXAMPLES) == 1


@pytest.mark.parametrize("example", V1_EXAMPLES, ids=lambda example: example["source"])
def test_every_v1_example_is_accepted_and_written_back_exactly(example: dict[str, Any]) -> None:
    parsed = parse_body(Endpoint(example["endpoint"]), example["body"], example["target"])

    assert parsed.wire() == example["body"]
    assert canonical(parsed.wire()) == canonical(example["body"])


@pytest.mark.parametrize("example", V1_EXAMPLES, ids=lambda example: example["source"])
def test_a_parsed_model_is_accepted_again_as_a_body(example: dict[str, Any]) -> None:
    endpoint = Endpoint(example["endpoint"])
    parsed = parse_body(endpoint, example["body"], example["target"])

    assert parse_body(endpoint, parsed, example["target"]).wire() == example["body"]


@pytest.mark.parametrize("target", [None, CHAT])
def test_the_old_beta_chat_example_is_refused_for_its_body(target: str | None) -> None:
    (example,) = BETA_EXAMPLES
    target = target or example["target"]

    with pytest.raises(InvalidNotification) as caught:
        parse_body(Endpoint(example["endpoint"]), example["body"], target)

    assert caught.value.field is not None
    assert caught.value.field.split(".")[0] in {"topic", "previewText"}


@pytest.mark.parametrize("case", INVALID, ids=str)
def test_an_invalid_body_or_id_is_refused_naming_the_field(case: Invalid) -> None:
    with pytest.raises(InvalidNotification) as caught:
        parse_body(case.endpoint, case.fresh_body(), case.target)

    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TeamsNotifyError)
    assert names_field(caught.value, case), f"{case.field!r} not named by {caught.value.field!r}: {caught.value}"


def test_a_typo_in_a_field_name_is_refused_naming_the_typo_or_the_missing_field() -> None:
    body = common(activityType=None)
    body["activitytype"] = "deploymentApprovalRequired"

    with pytest.raises(InvalidNotification) as caught:
        parse_body(Endpoint.USER, body, USER)

    assert caught.value.field in {"activitytype", "activityType"}
    assert caught.value.field in str(caught.value)


def test_an_entity_url_topic_that_is_no_url_is_refused_quoting_the_value() -> None:
    body = common(topic={"source": "entityUrl", "value": "teams/1234"})

    with pytest.raises(InvalidNotification, match="teams/1234") as caught:
        parse_body(Endpoint.USER, body, USER)

    assert caught.value.field is not None
    assert caught.value.field.startswith("topic")


def test_a_bulk_body_names_the_recipient_and_field_of_a_bad_user_id() -> None:
    body = common(recipients=[aad_user(), aad_user(), aad_user("not a user")])
    body["recipients"][1] = aad_user(UPN)

    with pytest.raises(InvalidNotification) as caught:
        parse_body(Endpoint.RECIPIENTS, body)

    assert caught.value.field == "recipients[2].userId"


def test_bulk_duplicates_are_removed_case_insensitively_keeping_the_first() -> None:
    first = "AB88234E-0874-477C-9638-D144296ED04F"
    recipients = [aad_user(first), aad_user(UPN), aad_user(first.lower()), aad_user("JACOB@contoso.com")]
    recipients.append(aad_user(USER))

    wire = parse_body(Endpoint.RECIPIENTS, common(recipients=recipients)).wire()

    assert wire["recipients"] == [aad_user(first), aad_user(UPN), aad_user(USER)]


@pytest.mark.parametrize("count", [1, MAX_RECIPIENTS_PER_REQUEST, MAX_RECIPIENTS_PER_REQUEST + 1, 2_500])
def test_a_bulk_body_takes_any_number_of_recipients(count: int) -> None:
    parsed = parse_body(Endpoint.RECIPIENTS, bulk_body(count))

    assert isinstance(parsed, RecipientsNotification)
    assert [r["userId"] for r in parsed.wire()["recipients"]] == user_ids(count)


def test_an_odata_type_with_a_leading_hash_is_accepted_and_kept() -> None:
    recipient = {"@odata.type": "#" + AAD_USER, "userId": USER}
    body = common(recipients=[recipient])

    assert parse_body(Endpoint.RECIPIENTS, body).wire()["recipients"] == [recipient]


def test_an_odata_type_of_another_namespace_is_refused() -> None:
    body = common(recipients=[{"@odata.type": "contoso.aadUserNotificationRecipient", "userId": USER}])

    with pytest.raises(InvalidNotification, match="recipients"):
        parse_body(Endpoint.RECIPIENTS, body)


def test_a_template_parameter_with_only_its_odata_type_is_accepted() -> None:
    body = common(
        recipient={"@odata.type": AAD_USER, "userId": USER},
        templateParameters=[{"@odata.type": "microsoft.graph.keyValuePair"}],
    )

    parsed = parse_body(Endpoint.TEAM, body, TEAM)

    assert isinstance(parsed, TeamNotification)
    assert parsed.wire() == body


def test_optional_fields_given_are_written_back_and_absent_ones_are_not_added() -> None:
    body = common(chainId=2**63 - 1, teamsAppId="a3111f15-658e-457c-9689-fd20fe907330", iconId="announcementCreated")
    body["previewText"]["contentType"] = "text"
    bare = common(templateParameters=None)

    assert parse_body(Endpoint.USER, body, USER).wire() == body
    assert parse_body(Endpoint.USER, bare, USER).wire() == bare


def test_a_recipient_names_the_url_team_regardless_of_case() -> None:
    body = common(recipient={"@odata.type": "microsoft.graph.teamMembersNotificationRecipient", "teamId": TEAM.upper()})

    assert parse_body(Endpoint.TEAM, body, TEAM).wire() == body


@pytest.mark.parametrize(
    ("endpoint", "target", "expected"),
    [
        (Endpoint.USER, USER, f"/users/{USER}/teamwork/sendActivityNotification"),
        (Endpoint.USER, UPN, "/users/jacob%40contoso.com/teamwork/sendActivityNotification"),
        (Endpoint.CHAT, CHAT, "/chats/19%3Ad65713bc498c4a428c71ef9353e6ce20%40thread.v2/sendActivityNotification"),
        (Endpoint.TEAM, TEAM, f"/teams/{TEAM}/sendActivityNotification"),
        (Endpoint.RECIPIENTS, None, "/teamwork/sendActivityNotificationToRecipients"),
    ],
)
def test_a_path_percent_encodes_its_id(endpoint: Endpoint, target: str | None, expected: str) -> None:
    assert endpoint.path(target) == expected


HOSTILE_IDS = ["../me", "a/b", "me?$select=id", "x#fragment", "../../teams/x", "%2e%2e", "%2F", "a\\b", "..."]
GRAPH = httpx.URL("https://graph.microsoft.com/v1.0/")


@pytest.mark.parametrize("endpoint", [Endpoint.USER, Endpoint.CHAT, Endpoint.TEAM])
@pytest.mark.parametrize("target", HOSTILE_IDS)
def test_no_id_can_change_which_endpoint_a_path_reaches(endpoint: Endpoint, target: str) -> None:
    # As Graph receives it: joined by httpx, which removes dot segments and splits off query and fragment.
    sent = GRAPH.join(endpoint.path(target).lstrip("/"))
    template = GRAPH.join(endpoint.path("ID").lstrip("/"))

    assert (sent.query, sent.fragment) == (b"", "")
    got, want = sent.raw_path.split(b"/"), template.raw_path.split(b"/")
    assert len(got) == len(want), f"{target!r} made the path {sent.raw_path!r}"
    at = want.index(b"ID")
    assert got[:at] + got[at + 1 :] == want[:at] + want[at + 1 :]
    assert unquote(got[at].decode()) == target


def test_a_dot_segment_id_is_refused_or_cannot_climb_out_of_the_path() -> None:
    # `.` and `..` contain nothing percent-encoding changes, and every HTTP client removes them as dot segments.
    climbed = []
    for endpoint in (Endpoint.USER, Endpoint.CHAT, Endpoint.TEAM):
        for target in (".", ".."):
            try:
                path = endpoint.path(target)
            except ValueError:
                continue
            sent = GRAPH.join(path.lstrip("/")).raw_path.decode()
            if sent.count("/") != GRAPH.join(endpoint.path("ID").lstrip("/")).raw_path.decode().count("/"):
                climbed.append(f"{endpoint.value} {target!r} -> POST {sent}")

    assert not climbed, climbed


def test_a_user_or_chat_or_team_path_needs_a_target() -> None:
    with pytest.raises(ValueError, match="target"):
        Endpoint.USER.path(None)


def a_url(length: int) -> str:
    """An https URL of exactly `length` characters."""
    start = "https://teams.microsoft.com/l/message/"
    return start + "a" * (length - len(start))


@pytest.mark.parametrize("length", [1_025, MAX_URL_LENGTH])
def test_a_web_url_up_to_the_limit_is_accepted(length: int) -> None:
    body = common(topic={"source": "text", "value": "Approvals", "webUrl": a_url(length)})

    assert parse_body(Endpoint.USER, body, USER).wire() == body


def test_a_web_url_over_the_limit_is_refused_naming_the_field_and_the_limit() -> None:
    body = common(topic={"source": "text", "value": "Approvals", "webUrl": a_url(MAX_URL_LENGTH + 1)})

    with pytest.raises(InvalidNotification, match="2,048") as caught:
        parse_body(Endpoint.USER, body, USER)

    assert caught.value.field == "topic.webUrl"
    assert "topic.webUrl" in str(caught.value)


@pytest.mark.parametrize(
    "topic",
    [
        {"source": "entityUrl", "value": a_url(MAX_URL_LENGTH + 1)},
        {"source": "text", "value": "x" * (MAX_URL_LENGTH + 1), "webUrl": a_url(100)},
    ],
    ids=["entityUrl", "text"],
)
def test_a_topic_value_over_the_limit_is_refused_naming_the_field(topic: dict[str, str]) -> None:
    with pytest.raises(InvalidNotification, match="MAX_URL_LENGTH") as caught:
        parse_body(Endpoint.USER, common(topic=topic), USER)

    assert caught.value.field == "topic.value"


def test_a_topic_value_at_the_limit_is_accepted() -> None:
    body = common(topic={"source": "entityUrl", "value": a_url(MAX_URL_LENGTH)})

    assert parse_body(Endpoint.USER, body, USER).wire() == body


@pytest.mark.parametrize(
    "content",
    ["x" * MAX_PREVIEW_BYTES, "é" * (MAX_PREVIEW_BYTES // 2), "x" * (10 * MAX_PREVIEW_BYTES)],
    ids=["64 KB of ASCII", "64 KB of two-byte characters", "640 KB"],
)
def test_a_preview_text_of_64_kb_or_more_is_refused_naming_the_field(content: str) -> None:
    with pytest.raises(InvalidNotification, match="64 KB") as caught:
        parse_body(Endpoint.RECIPIENTS, common(recipients=[aad_user()], previewText={"content": content}))

    assert caught.value.field == "previewText.content"


def test_a_preview_text_just_under_64_kb_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    body = common(previewText={"content": "x" * (MAX_PREVIEW_BYTES - 1)})

    with caplog.at_level(logging.WARNING, logger="producers.models"):
        parsed = parse_body(Endpoint.USER, body, USER)

    assert parsed.wire() == body
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_a_preview_text_longer_than_teams_shows_is_sent_with_a_warning_and_a_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = common(previewText={"content": "y" * (PREVIEW_SHOWN + 1)})

    with caplog.at_level(logging.WARNING, logger="producers.models"):
        parsed = parse_body(Endpoint.USER, body, USER)

    assert parsed.wire() == body
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "previewText.content" in record.getMessage()
    assert "151 characters" in record.getMessage()
    assert "y" * 20 not in record.getMessage(), "the preview itself is the sender's content: not logged"
    assert parsed.notes() == [f"previewText.content: 151 characters; Teams shows only the first {PREVIEW_SHOWN}"]


def test_a_preview_text_teams_shows_whole_is_sent_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    body = common(previewText={"content": "é" * PREVIEW_SHOWN})

    with caplog.at_level(logging.WARNING, logger="producers.models"):
        parsed = parse_body(Endpoint.USER, body, USER)

    assert not caplog.records
    assert parsed.notes() == []
