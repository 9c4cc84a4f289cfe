"""Bulk recipients stored compactly, and validated fast: what comes back is what the caller gave."""

from __future__ import annotations

from typing import Any

import pytest

from producers import chunks
from producers.errors import InvalidNotification
from producers.models import Endpoint, parse_body, parse_bulk
from tests.unit.notification_examples import AAD_USER, UPN, USER, common


def aad(user_id: str, odata: str = AAD_USER) -> dict[str, Any]:
    return {"@odata.type": odata, "userId": user_id}


@pytest.mark.parametrize(
    "recipients",
    [
        [aad(USER)],
        [aad(UPN)],
        [aad(USER), aad(UPN), aad("o'brien+teams@sub.contoso.co.uk")],
        [aad(USER, "#" + AAD_USER), aad(UPN)],
        [aad(f"user{i}@contoso.com") for i in range(100)],
    ],
    ids=["guid", "upn", "mixed ids", "odata with a hash", "a full slice"],
)
def test_every_kind_of_bulk_recipient_round_trips_through_its_stored_form(recipients: list[dict[str, Any]]) -> None:
    stored = chunks.encode(recipients)

    assert chunks.decode(stored) == recipients


def test_a_plain_slice_is_stored_as_ids_and_a_slice_with_another_spelling_as_json() -> None:
    assert chunks.encode([aad(USER), aad(UPN)]) == f"{USER}\n{UPN}"
    assert chunks.encode([aad(USER, "#" + AAD_USER)]).startswith("[")
    assert chunks.encode_ids([USER, UPN]) == chunks.encode([aad(USER), aad(UPN)])


def test_the_compact_form_takes_under_40_bytes_a_guid_recipient() -> None:
    guids = [f"{i:08x}-4e49-4661-87f2-16f245c5d66a" for i in range(100)]

    assert len(chunks.encode([aad(g) for g in guids]).encode()) <= 37 * 100


def test_the_fast_path_gives_what_the_model_gives_duplicates_removed_case_insensitively() -> None:
    recipients = [aad(USER), aad(UPN), aad(USER.upper()), aad("JACOB@contoso.com"), aad("emma@contoso.com")]
    body = common(recipients=recipients)

    head, unique, plain = parse_bulk(body)

    assert unique == parse_body(Endpoint.RECIPIENTS, body).wire()["recipients"]
    assert unique == [aad(USER), aad(UPN), aad("emma@contoso.com")]
    assert plain
    assert head.activity_type == body["activityType"]
    assert unique[0] is recipients[0]  # the caller's dicts, not copies


def test_the_fast_path_reports_a_hash_spelling_as_not_plain() -> None:
    _, unique, plain = parse_bulk(common(recipients=[aad(USER), aad(UPN, "#" + AAD_USER)]))

    assert not plain
    assert chunks.decode(chunks.encode(unique)) == unique


@pytest.mark.parametrize(
    ("recipients", "field"),
    [
        ([aad(USER), aad("not a user")], "recipients[1].userId"),
        ([aad(USER), {"@odata.type": AAD_USER, "userId": UPN, "extra": 1}], "recipients[1].extra"),
        ([aad(USER), aad(UPN, "microsoft.graph.teamMembersNotificationRecipient")], "recipients[1]"),
        ([aad(USER), "jacob@contoso.com"], "recipients[1]"),
        ([aad("bad id"), aad(USER)], "recipients[0].userId"),
    ],
)
def test_a_bad_recipient_is_refused_by_the_fast_path_with_the_models_error(recipients: list[Any], field: str) -> None:
    body = common(recipients=recipients)
    with pytest.raises(InvalidNotification) as model:
        parse_body(Endpoint.RECIPIENTS, body)
    with pytest.raises(InvalidNotification) as fast:
        parse_bulk(body)

    assert str(fast.value) == str(model.value)
    assert fast.value.field == model.value.field
    assert (fast.value.field or "").startswith(field)


def test_the_rest_of_a_bulk_body_is_checked_by_the_model_on_the_fast_path() -> None:
    with pytest.raises(InvalidNotification, match="activityType"):
        parse_bulk(common(recipients=[aad(USER)], activityType=""))
