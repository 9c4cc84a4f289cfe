"""`teams-notify bench --peer msgraph-sdk`: the same throttled workload sent by teams-notify and by Microsoft's
official Python SDK, against the same simulator in the same run, side by side.

The workload: one bulk notification to `recipients` users (requests of 100) and `singles` user sends, in one
tenant, with the simulator enforcing Graph's published limits (bulk: 2 requests/s per app per tenant; user
sends: 5/s). teams-notify sends it through `producers.Notifier` and a fleet of real worker processes pacing
themselves at those limits; the SDK sends it as a user's script would (see `peer_sdk`): every send at once
under a Semaphore(16), retried by the SDK's default RetryHandler.

The two runs never see each other's throttling windows: teams-notify runs first; when its jobs have ended
(and a settling pause has passed) its figures are read, its workers are stopped and the simulator is reset
(records, counters and throttling windows), then the SDK runs against the same simulator, tenant and app.

Each row is counted the same way, from the simulator's side: delivered, lost and duplicated from its record
of accepted requests (each expected (endpoint, tenant, user) counted once), 429s and requests from its
response counters, token requests from its Entra counters (tokens issued plus token errors).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from worker.bench import figures, peer_sdk
from worker.bench.fleet import Fleet, bulk, notification, users
from worker.demo import DEMO_CLIENT_ID, DEMO_TENANT

Say = Callable[[str], None]

#: The peers `--peer` accepts.
PEER_NAMES = ("msgraph-sdk",)
#: The full-size workload: 30 bulk requests of 100, and 20 single sends.
RECIPIENTS = 3_000
SINGLES = 20
#: Recipients in one bulk request (Graph's maximum).
PER_REQUEST = 100
#: The teams-notify fleet: workers and the Celery concurrency of each.
WORKERS = 2
CONCURRENCY = 8
#: Seconds to wait after teams-notify's jobs end before reading Graph's record, so a late duplicate counts.
SETTLE_SECONDS = 2.0
#: The app's secret (the simulator accepts any secret when no client is registered).
CLIENT_SECRET = "bench-secret"


def run_peer(
    workdir: Path, timeout: float, say: Say, *, recipients: int = RECIPIENTS, singles: int = SINGLES
) -> dict[str, Any]:
    """Runs the workload through teams-notify, then through msgraph-sdk, each given `timeout` seconds.

    Returns `{"rows": [teams-notify row, msgraph-sdk row], "ok": bool, "workload": {...}, "details": {...}}`.
    `ok` means teams-notify delivered every notification exactly once, both runs ended in time, and the
    recipients of the SDK's sends that raised are exactly those Graph's record lacks (the SDK losing
    notifications is what the comparison shows, not a failure).
    Raises ImportError naming the `bench` extra when the SDK is not installed (before starting anything).
    """
    peer_sdk.require_sdk()
    addressed, singled = users(recipients), users(singles, series=1)
    expected = expected_deliveries(DEMO_TENANT, addressed, singled)
    chunks = [addressed[i : i + PER_REQUEST] for i in range(0, len(addressed), PER_REQUEST)]
    workload = describe_workload(recipients, singles, len(chunks))
    with Fleet(workdir, workers=WORKERS, concurrency=CONCURRENCY, rate_limits="graph") as fleet:
        say(f"peer: teams-notify sends {len(chunks)} bulk requests and {singles} user sends through {WORKERS} workers")
        ours, ours_details = _run_ours(fleet, addressed, singled, expected, timeout)
        say(_line(ours))
        for worker in fleet.workers:  # nothing of ours may reach Graph (or Entra) during the SDK's run
            worker.stop()
        fleet.sim.reset()
        say(f"peer: msgraph-sdk sends the same, {peer_sdk.SDK_CONCURRENCY} at a time (simulator reset)")
        sdk, sdk_details = _run_sdk(fleet, chunks, singled, expected, timeout)
        say(_line(sdk))
    wanted = len(set(expected))
    ok = bool(
        ours_details["ended"]
        and ours["delivered"] == wanted
        and ours["lost"] == 0
        and ours["duplicated"] == 0
        and not sdk_details["timed_out"]
        and sdk_details["raised_recipients"] == sdk["lost"]  # what the script was told agrees with Graph's record
    )
    return {
        "rows": [ours, sdk],
        "ok": ok,
        "workload": workload,
        "details": {"teams-notify": ours_details, "msgraph-sdk": sdk_details, "logs": str(workdir)},
    }


def describe_workload(recipients: int, singles: int, requests: int) -> dict[str, Any]:
    """The workload and the set-up of both sides, JSON-ready."""
    return {
        "tenant": DEMO_TENANT,
        "bulk_recipients": recipients,
        "bulk_requests": requests,
        "single_sends": singles,
        "notifications": recipients + singles,
        "rate_limits": "graph (bulk 2/s per app per tenant, user sends 5/s per app per tenant)",
        "teams-notify": f"producers.Notifier + {WORKERS} workers x concurrency {CONCURRENCY}, pacing at Graph's limits",
        "msgraph-sdk": (
            f"GraphServiceClient with its default middleware (RetryHandler: Retry-After, at most 3 retries), "
            f"asyncio.gather with a Semaphore({peer_sdk.SDK_CONCURRENCY}), azure.identity.aio.ClientSecretCredential"
        ),
        "isolation": "one simulator; teams-notify first, then its workers stopped and the simulator reset",
        "versions": peer_sdk.sdk_versions(),
    }


def expected_deliveries(tenant: str, addressed: Sequence[str], singled: Sequence[str]) -> list[figures.Delivery]:
    """Every notification the workload asks for, as (endpoint, tenant, user)."""
    tenant = tenant.lower()
    return [("bulk", tenant, u.lower()) for u in addressed] + [("user", tenant, u.lower()) for u in singled]


def row(
    client: str,
    records: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Any],
    expected: Sequence[figures.Delivery],
    seconds: float,
) -> dict[str, Any]:
    """One side's figures from the simulator's records and stats (read after that side's run alone)."""
    lost, duplicated = figures.lost_and_duplicated(expected, figures.deliveries(records))
    responses: Mapping[str, int] = stats.get("responses", {})
    return {
        "client": client,
        "delivered": len(set(expected)) - lost,
        "lost": lost,
        "duplicated": duplicated,
        "throttled_429": int(responses.get("429", 0)),
        "token_requests": int(stats.get("tokens_issued", 0)) + int(stats.get("token_errors", 0)),
        "seconds": round(seconds, 3),
        "requests": sum(int(count) for count in responses.values()),
    }


def _run_ours(
    fleet: Fleet, addressed: list[str], singled: list[str], expected: list[figures.Delivery], timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workload through the producer API and the fleet; figures read once the jobs have ended."""
    deadline = time.monotonic() + timeout
    started = time.time()
    job_ids = [fleet.producer.notify_recipients(bulk(addressed))]
    job_ids += [fleet.producer.notify_user(user, notification()) for user in singled]
    statuses, ended_at = fleet.wait_jobs(job_ids, deadline)
    finished = time.time() if ended_at is None else ended_at
    if ended_at is not None:
        time.sleep(max(0.0, ended_at + SETTLE_SECONDS - time.time()))
    records, stats = fleet.sim.recorded_requests(), fleet.sim.stats()
    states: dict[str, int] = {}
    for status in statuses.values():
        states[str(status["state"])] = states.get(str(status["state"]), 0) + 1
    details = {
        "ended": ended_at is not None,
        "error": None if ended_at is not None else f"jobs not ended after {timeout:g}s",
        "job_states": states,
        "responses": stats["responses"],
    }
    return row("teams-notify", records, stats, expected, finished - started), details


def _run_sdk(
    fleet: Fleet, chunks: list[list[str]], singled: list[str], expected: list[figures.Delivery], timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workload through the SDK; every send has been answered when it returns, so no settling."""
    target = peer_sdk.Target(
        authority_host=fleet.sim.authority_host,
        graph_url=fleet.sim.graph_url,
        ca_path=fleet.sim.ca_path,
        tenant_id=DEMO_TENANT,
        client_id=DEMO_CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    outcome = peer_sdk.run_sdk(target, chunks, singled, timeout=timeout)
    records, stats = fleet.sim.recorded_requests(), fleet.sim.stats()
    details = {
        "timed_out": outcome.timed_out,
        "raised_requests": outcome.failed_requests,
        "raised_recipients": outcome.failed_recipients,
        "errors": dict(outcome.errors),
        "responses": stats["responses"],
    }
    return row("msgraph-sdk", records, stats, expected, outcome.seconds), details


def _line(r: Mapping[str, Any]) -> str:
    return (
        f"peer: {r['client']}: {r['delivered']} delivered, {r['lost']} lost, {r['duplicated']} duplicated, "
        f"{r['throttled_429']} 429s, {r['token_requests']} token requests, {r['requests']} requests "
        f"in {r['seconds']:g}s"
    )
