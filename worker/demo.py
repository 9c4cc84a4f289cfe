"""`teams-notify demo`: the main job end to end on this machine, against the bundled Graph simulator.

Starts what is missing (a private redis-server, the simulator, one worker), enqueues a bulk job and one
user, chat and team notification, shows progress, prints a delivery report, and stops what it started.
"""

from __future__ import annotations

import ssl
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producers import Notifier
from worker import sandbox
from worker.simulator import Simulator, SimulatorConfig

DEMO_TENANT = "7155e3c8-175e-4311-97ef-572edc3aa3db"
DEMO_CLIENT_ID = "a3111f15-658e-457c-9689-fd20fe907330"
DEMO_TEAM = "e8bece96-d393-4b9b-b8da-69cedef1a7e7"
DEMO_CHAT = "19:d65713bc498c4a428c71ef9353e6ce20@thread.v2"
DEMO_USER = "569363e2-4e49-4661-87f2-16f245c5d66a"
#: Chat and team sends go to other users: Graph allows only 10 notifications a minute to one user.
DEMO_CHAT_USER = "ab88234e-0874-477c-9638-d144296ed04f"
DEMO_TEAM_USER = "01c64f53-69aa-42c7-9b7f-9f75195d6bfc"
_TOPIC = {
    "source": "text",
    "value": "Deployment Approvals Channel",
    "webUrl": "https://teams.microsoft.com/l/message/19:448cfd2ac2a7490a9084a9ed14cttr78c@thread.skype/1605223780000",
}


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "topic": _TOPIC,
        "activityType": "deploymentApprovalRequired",
        "previewText": {"content": "New deployment requires your approval"},
        "templateParameters": [{"name": "deploymentId", "value": "6788662"}],
        **extra,
    }


def demo_users(count: int) -> list[str]:
    """Distinct, stable user ids for the bulk job."""
    return [str(uuid.UUID(int=0x1000_0000_0000_4000_8000_0000_0000_0000 + i)) for i in range(count)]


def _enqueue(notifier: Notifier, users: list[str]) -> dict[str, str]:
    recipients = [{"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": u} for u in users]

    def aad_user(user_id: str) -> dict[str, str]:
        return {"@odata.type": "microsoft.graph.aadUserNotificationRecipient", "userId": user_id}

    return {
        f"bulk ({len(users)} users)": notifier.notify_recipients(_body(recipients=recipients)),
        "user": notifier.notify_user(DEMO_USER, _body()),
        "chat": notifier.notify_chat(DEMO_CHAT, _body(recipient=aad_user(DEMO_CHAT_USER))),
        "team": notifier.notify_team(DEMO_TEAM, _body(recipient=aad_user(DEMO_TEAM_USER))),
    }


def _follow(console: Console, notifier: Notifier, jobs: dict[str, str], timeout: float) -> dict[str, Any]:
    """Shows a progress bar per job until every job has ended or the timeout passes."""
    statuses: dict[str, Any] = {}
    columns = (TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bars = {name: progress.add_task(name, total=None) for name in jobs}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = {name: notifier.status(job_id) for name, job_id in jobs.items()}
            for name, status in statuses.items():
                counts = status["recipients"] or status["requests"]
                done = counts["sent"] + counts["dead_lettered"]
                progress.update(bars[name], total=counts["total"], completed=done)
            if all(s["state"].startswith("completed") for s in statuses.values()):
                break
            time.sleep(0.2)
    return statuses


def _report(console: Console, statuses: dict[str, Any], sim: Simulator, users: list[str], took: float) -> bool:
    with httpx.Client(verify=ssl.create_default_context(cafile=str(sim.ca_path))) as client:
        base = sim.authority_host
        stats = client.get(f"{base}/_simulator/stats").json()
        accepted = client.get(f"{base}/_simulator/requests").json()
    table = Table(title="delivery report")
    for column in ("job", "state", "requests sent/total", "recipients sent/total", "dead-lettered"):
        table.add_column(column)
    for name, status in statuses.items():
        req, rec = status["requests"], status["recipients"]
        table.add_row(
            name,
            status["state"],
            f"{req['sent']}/{req['total']}",
            f"{rec['sent']}/{rec['total']}" if rec else "-",
            str(req["dead_lettered"]),
        )
    console.print(table)
    delivered = Counter(
        r["userId"] for request in accepted if request["endpoint"] == "bulk" for r in request["body"]["recipients"]
    )
    exactly_once = set(delivered) == set(users) and all(n == 1 for n in delivered.values())
    sizes = [len(r["body"]["recipients"]) for r in accepted if r["endpoint"] == "bulk"]
    console.print(f"Graph (simulator) accepted {stats['accepted_requests']} requests in {took:.1f}s")
    console.print(f"bulk: {len(sizes)} requests, largest {max(sizes, default=0)} recipients (Graph allows 100)")
    console.print(f"every bulk recipient notified exactly once: {'yes' if exactly_once else 'NO'}")
    answers = ", ".join(f"{code}: {n}" for code, n in sorted(stats["responses"].items()))
    console.print(f"simulator answers by status: {answers}")
    done = all(s["state"] == "completed" for s in statuses.values())
    return done and exactly_once


def run_demo(recipients: int = 1000, timeout: float = 180) -> int:
    """Runs the demo; 0 when every notification was delivered exactly once."""
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="teams-notify-demo-"))
    redis_server = sandbox.RedisServer(workdir / "redis")
    (workdir / "redis").mkdir()
    console.print("[bold]teams-notify demo[/bold]: a private Redis, the Graph simulator, one worker")
    redis_server.start()
    sim = Simulator(SimulatorConfig(port=0, state_dir=workdir / "simulator")).start()
    env = sandbox.simulator_env(
        sim, redis_server.url, tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT_ID, client_secret="demo-secret"
    )
    worker = sandbox.WorkerProcess(env, "demo", workdir / "worker.log")
    try:
        worker.start()
        sandbox.wait_ready(redis_server.url, [worker.node])
        console.print(f"simulator at {sim.graph_url}; worker {worker.node} ready; logs in {workdir}")
        notifier = Notifier(redis_server.url)
        users = demo_users(recipients)
        started = time.monotonic()
        jobs = _enqueue(notifier, users)
        statuses = _follow(console, notifier, jobs, timeout)
        ok = _report(console, statuses, sim, users, time.monotonic() - started)
        notifier.close()
        console.print("[green]all delivered[/green]" if ok else "[red]not all delivered[/red]")
        return 0 if ok else 1
    finally:
        worker.stop()
        sim.stop()
        redis_server.stop()
