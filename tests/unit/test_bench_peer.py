"""`teams-notify bench --peer msgraph-sdk`: the rows from the simulator's records, the SDK's bodies, the
ImportError without the SDK (no network, no processes: the live run is tests/integration/test_bench_peer.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from worker.bench import peer, peer_sdk
from worker.simulator.validation import validate_body

TENANT = "7155E3C8-175E-4311-97EF-572EDC3AA3DB"
USERS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(6)]


def _bulk(users: list[str], tenant: str = TENANT) -> dict[str, Any]:
    return {
        "endpoint": "bulk",
        "target": None,
        "tenant_id": tenant.lower(),
        "recipients": len(users),
        "body": {"recipients": [{"userId": u.upper()} for u in users]},
    }


def _user(user: str, tenant: str = TENANT) -> dict[str, Any]:
    return {"endpoint": "user", "target": user, "tenant_id": tenant.lower(), "recipients": 1, "body": {}}


def test_the_peers_are_named() -> None:
    assert peer.PEER_NAMES == ("msgraph-sdk",)


def test_expected_deliveries_are_lower_cased_per_endpoint() -> None:
    expected = peer.expected_deliveries(TENANT, ["AB"], ["Cd"])
    assert expected == [("bulk", TENANT.lower(), "ab"), ("user", TENANT.lower(), "cd")]


def test_a_row_counts_delivered_lost_duplicated_429s_tokens_and_requests() -> None:
    expected = peer.expected_deliveries(TENANT, USERS[:4], USERS[4:])
    records = [
        _bulk(USERS[:2]),
        _bulk(USERS[1:3]),  # USERS[1] a second time; USERS[3] never
        _user(USERS[4]),
        _user(USERS[4]),  # a duplicate user send; USERS[5] never
        _bulk(["ffffffff-0000-4000-8000-000000000000"]),  # not asked for: neither delivered nor duplicated
        _user(USERS[0], tenant="11111111-1111-4111-8111-111111111111"),  # another tenant: not this workload's
    ]
    stats = {
        "responses": {"202": 3, "204": 3, "429": 7, "503": 1},
        "tokens_issued": 3,
        "token_errors": 1,
        "accepted_requests": 6,
    }
    row = peer.row("msgraph-sdk", records, stats, expected, 12.34567)
    assert row == {
        "client": "msgraph-sdk",
        "delivered": 4,
        "lost": 2,
        "duplicated": 2,
        "throttled_429": 7,
        "token_requests": 4,
        "seconds": 12.346,
        "requests": 14,
    }


def test_a_row_of_a_clean_run_has_no_losses_and_no_429s() -> None:
    expected = peer.expected_deliveries(TENANT, USERS[:3], [])
    stats = {"responses": {"202": 1}, "tokens_issued": 1, "token_errors": 0}
    row = peer.row("teams-notify", [_bulk(USERS[:3])], stats, expected, 1.0)
    assert (row["delivered"], row["lost"], row["duplicated"], row["throttled_429"]) == (3, 0, 0, 0)
    assert (row["token_requests"], row["requests"]) == (1, 1)


def test_a_row_of_nothing_sent_loses_everything() -> None:
    expected = peer.expected_deliveries(TENANT, USERS, [])
    row = peer.row("msgraph-sdk", [], {"responses": {}, "tokens_issued": 0, "token_errors": 0}, expected, 0.0)
    assert (row["delivered"], row["lost"], row["requests"]) == (0, len(USERS), 0)


def test_the_workload_says_how_the_runs_are_kept_apart() -> None:
    workload = peer.describe_workload(3000, 20, 30)
    assert (workload["bulk_requests"], workload["notifications"]) == (30, 3020)
    assert "reset" in workload["isolation"]
    assert set(workload["versions"]) >= {"msgraph-sdk", "azure-identity"}


@pytest.mark.parametrize("module", ["msgraph", "azure.identity.aio", "msgraph_core"])
def test_without_the_sdk_run_peer_names_the_bench_extra(
    module: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError

    def no_fleet(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing may start without the SDK")

    monkeypatch.setattr(peer, "Fleet", no_fleet)
    with pytest.raises(ImportError, match=r"teams-notify\[bench\]") as caught:
        peer.run_peer(tmp_path, 10, lambda _: None)
    assert module in str(caught.value)


def _serialized(model: Any) -> Any:
    from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter  # noqa: PLC0415

    writer = JsonSerializationWriter()
    writer.write_object_value(None, model)
    return json.loads(writer.get_serialized_content())


def test_the_sdks_bulk_body_is_one_graph_accepts() -> None:
    body = _serialized(peer_sdk.bulk_body(USERS[:3]))
    assert [r["userId"] for r in body["recipients"]] == USERS[:3]
    assert body["topic"]["source"] == "entityUrl"
    notification = validate_body("bulk", None, body)
    assert notification.recipients == 3


def test_the_sdks_user_body_is_one_graph_accepts() -> None:
    body = _serialized(peer_sdk.user_body())
    assert "recipients" not in body
    assert validate_body("user", USERS[0], body).recipients == 1


def test_an_odata_error_is_described_by_status_and_code() -> None:
    from msgraph.generated.models.o_data_errors.main_error import MainError  # noqa: PLC0415
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError  # noqa: PLC0415

    error = ODataError(error=MainError(code="TooManyRequests", message="slow down"))
    error.response_status_code = 429
    assert peer_sdk.describe(error) == "ODataError 429 TooManyRequests"
    assert peer_sdk.describe(TimeoutError("read timed out")) == "TimeoutError: read timed out"
