"""A local fleet in child processes: a private redis-server and `teams-notify worker`s.

The demo, the integration tests and the benchmarks all start what they need through this module, so there
is one way to start, wait for and stop each piece.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import redis
from celery import Celery

from producers.errors import ConfigurationError

#: Seconds a child gets to start or to stop on SIGTERM before it is killed.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at the URL."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisServer:
    """A throwaway redis-server on a free port; with `durable`, an append-only file synced on every write.

    A durable server can be killed (`kill`, as a crash would) and started again on the same port and
    directory (`restart`): it comes back with everything it had acknowledged.
    """

    def __init__(self, directory: Path | None = None, *, durable: bool = False) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="teams-notify-redis-"))
        self.durable = durable
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Starts it (on the port it had, if it ran before) and waits until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigurationError("redis-server is not installed: run the README's set-up (./run setup)")
        self.port = self.port or free_port()
        options: dict[str, Any] = {"port": self.port, "bind": "127.0.0.1", "save": "", "dir": self.directory}
        options |= {"appendonly": "yes", "appendfsync": "always"} if self.durable else {"appendonly": "no"}
        options["logfile"] = self.directory / "redis.log"
        self._process = subprocess.Popen(
            [binary, *(item for key, value in options.items() for item in (f"--{key}", str(value)))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: redis_answers(self.url), f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        """Kills it at once (SIGKILL), as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()

    def restart(self) -> RedisServer:
        """Starts it again on the same port and directory (after `kill` or `stop`)."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("redis-server is still running")
        return self.start()

    def stop(self) -> None:
        """Stops it."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()


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


def wait_ready(redis_url: str, nodes: list[str], timeout: float = START_TIMEOUT) -> None:
    """Waits until every named worker answers a ping through the broker."""
    app = Celery(broker=redis_url)
    try:

        def all_answer() -> bool:
            replies = app.control.ping(timeout=0.5) or []
            answered = {name for reply in replies for name in reply}
            return set(nodes) <= answered

        _wait(all_answer, f"workers {', '.join(nodes)}", timeout)
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


def _wait(ready: Any, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not start within {timeout:.0f}s")
