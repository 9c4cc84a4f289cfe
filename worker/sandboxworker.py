"""The sandbox's workers: `teams-notify worker` child processes, their environment, waiting until they answer.

Part of worker.sandbox, which re-exports it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from celery import Celery
from kombu.exceptions import OperationalError

from worker import broker
from worker.sandboxchild import START_TIMEOUT, STOP_TIMEOUT, wait_until


class WorkerProcess:
    """One `teams-notify worker` child process with its own node name and log file."""

    def __init__(self, env: dict[str, str], name: str, log_path: Path, args: list[str] | None = None) -> None:
        self.env = env
        self.name = name
        self.log_path = log_path
        self.args = args or []
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def node(self) -> str:
        """The Celery node name, as workers answer a ping."""
        return f"{self.name}@{socket.gethostname()}"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> WorkerProcess:
        """Starts the worker (returns at once; `wait_ready` waits for it)."""
        self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "worker", "worker", "-n", self.node, *self.args]
        self._process = subprocess.Popen(command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def running(self) -> bool:
        """True while the child has not exited."""
        return self._process is not None and self._process.poll() is None

    def signal(self, signum: int) -> None:
        """Sends a signal to the worker."""
        if self._process is not None:
            self._process.send_signal(signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL if it lingers; returns the exit code."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
        return self._process.returncode


def wait_ready(broker_url: str, nodes: list[str], timeout: float = START_TIMEOUT) -> None:
    """Waits until every named worker answers a ping through the broker (any URL the fleet takes)."""
    url, options = broker.celery_url(broker_url)
    app = Celery(broker=url)
    app.conf.broker_transport_options = options
    app.conf.broker_use_ssl = broker.ssl_options(broker_url) or False  # a rediss:// broker is verified
    try:

        def all_answer() -> bool:
            try:
                replies = app.control.ping(timeout=0.5) or []
            except (OSError, OperationalError):  # a pooled connection to a broker that restarted: next time
                return False
            answered = {name for reply in replies for name in reply}
            return set(nodes) <= answered

        wait_until(all_answer, f"workers {', '.join(nodes)}", timeout)
    finally:
        app.close()


def worker_env(base: dict[str, str] | None = None, **settings: Any) -> dict[str, str]:
    """The environment of a worker child: this one's, plus TEAMS_NOTIFY_* settings given by name."""
    env = dict(os.environ if base is None else base)
    for name, value in settings.items():
        env[name if name.isupper() else f"TEAMS_NOTIFY_{name.upper()}"] = str(value)
    return env


def simulator_env(
    sim: Any, redis_url: str, *, tenant_id: str, client_id: str, client_secret: str, **settings: Any
) -> dict[str, str]:
    """A worker's environment against a simulator: its two URLs, trust in its CA, credentials, JSON logs."""
    return worker_env(
        redis_url=redis_url,
        graph_url=sim.graph_url,
        authority_host=sim.authority_host,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        **{"log_format": "json", **settings},
        SSL_CERT_FILE=str(sim.bundle_path),
        REQUESTS_CA_BUNDLE=str(sim.bundle_path),
    )
