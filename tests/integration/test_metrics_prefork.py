"""Prefork workers' /metrics: each worker's processes write to a directory of its own (two workers on one host
never mix their files), a pool child killed and replaced is not counted twice, the worker removes the directory
it made, and a directory the operator set is used and kept."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_metrics import sample
from worker import metricsdir, sandbox

pytestmark = pytest.mark.integration

PREFORK = ["-P", "prefork", "-c", "2"]


def children(pid: int) -> list[int]:
    """The pids of a process's children (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def environment(pid: int) -> dict[str, str]:
    """A process's environment as it was when it (last) executed."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


def processes_counted(port: int, expected: float, timeout: float = 60) -> float:
    """Scrapes until teams_notify_worker_processes is the expected number; the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = sample(httpx.get(f"http://127.0.0.1:{port}/metrics").text, "teams_notify_worker_processes")
        if seen == expected or time.monotonic() > deadline:
            return seen or 0
        time.sleep(0.2)


def start(env: dict[str, str], name: str, tmp_path: Path, redis_url: str) -> tuple[sandbox.WorkerProcess, int]:
    port = sandbox.free_port()
    env = {**env, "TEAMS_NOTIFY_METRICS_PORT": str(port)}
    worker = sandbox.WorkerProcess(env, name, tmp_path / f"{name}.log", PREFORK)
    worker.start()
    sandbox.wait_ready(redis_url, [worker.node])
    return worker, port


def test_two_prefork_workers_on_one_host_keep_their_own_files_and_remove_them(
    worker_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in worker_env.items() if key != metricsdir.ENV}
    first, first_port = start(env, "pa", tmp_path, redis_url)
    second, second_port = start(env, "pb", tmp_path, redis_url)
    try:
        assert first.pid is not None
        assert second.pid is not None
        directories = {environment(w.pid)[metricsdir.ENV] for w in (first, second) if w.pid is not None}
        assert len(directories) == 2
        assert processes_counted(first_port, 3) == 3  # its main process and its two children, not the other's
        assert processes_counted(second_port, 3) == 3

        [killed, *_] = children(first.pid)
        os.kill(killed, signal.SIGKILL)  # the pool replaces it; the dead one's gauge is dropped
        deadline = time.monotonic() + 60
        while killed in children(first.pid) or len(children(first.pid)) < 2:
            assert time.monotonic() < deadline, "the killed child was never replaced"
            time.sleep(0.2)
        assert processes_counted(first_port, 3) == 3
    finally:
        first.stop()
        second.stop()
    for directory in directories:
        assert not Path(directory).exists()


def test_a_directory_the_operator_set_is_used_and_kept(
    worker_env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    given = tmp_path / "metrics"
    given.mkdir()
    worker, port = start({**worker_env, metricsdir.ENV: str(given)}, "po", tmp_path, redis_url)
    try:
        assert worker.pid is not None
        assert environment(worker.pid)[metricsdir.ENV] == str(given)  # not re-executed with a private one
        assert processes_counted(port, 3) == 3
        assert {path.name for path in given.glob(f"*_{worker.pid}.db")}  # the main process's files
    finally:
        worker.stop()
    assert given.is_dir()
