"""`teams-notify bench --peer msgraph-sdk`, live and small: a private Redis, the simulator at Graph's limits,
real workers, then Microsoft's SDK against the same simulator. Needs the `bench` extra (msgraph-sdk and
azure-identity): without it this test fails with the ImportError naming the extra, it is never skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.bench.peer import run_peer

pytestmark = pytest.mark.integration

RECIPIENTS = 500
SINGLES = 10


@pytest.mark.timeout(120)
def test_run_peer_counts_both_sides_from_the_simulators_record(tmp_path: Path) -> None:
    said: list[str] = []
    result = run_peer(tmp_path / "peer", 60, said.append, recipients=RECIPIENTS, singles=SINGLES)
    expected = RECIPIENTS + SINGLES
    ours, sdk = result["rows"]
    assert (ours["client"], sdk["client"]) == ("teams-notify", "msgraph-sdk")
    assert (ours["delivered"], ours["lost"], ours["duplicated"]) == (expected, 0, 0)
    assert sdk["delivered"] + sdk["lost"] == expected
    assert sdk["duplicated"] == 0  # a 429 is never accepted, so the SDK's retries cannot duplicate
    details = result["details"]["msgraph-sdk"]
    assert not details["timed_out"]
    assert details["raised_recipients"] == sdk["lost"]  # what the user's script was told matches Graph's record
    for row in (ours, sdk):
        assert row["token_requests"] >= 1
        assert row["requests"] >= RECIPIENTS // 100 + SINGLES
        assert row["requests"] >= row["throttled_429"] + row["delivered"] // 100
    assert result["ok"] is True
    assert result["workload"]["notifications"] == expected
    assert any("msgraph-sdk" in line for line in said)
