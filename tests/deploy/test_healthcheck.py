"""deploy/healthcheck.py, the image's HEALTHCHECK: healthy only while the worker's own /metrics answers."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
import pytest

import worker.observe  # noqa: F401 - registers the worker's metrics, as the worker process does
from tests.deploy.helpers import DEPLOY

SCRIPT = DEPLOY / "healthcheck.py"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log in the test output."""


def serve(app: WsgiApp) -> Iterator[int]:
    """Serves a WSGI app on a free loopback port for the test; yields the port."""
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def worker_metrics() -> Iterator[int]:
    """The worker's real exporter (its registry, prometheus_client's WSGI app), as `serve_metrics` runs it."""
    yield from serve(prometheus_client.make_wsgi_app())


@pytest.fixture
def other_exporter() -> Iterator[int]:
    """Something else answering /metrics on the port: another process's exporter."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"# HELP process_cpu_seconds_total CPU\nprocess_cpu_seconds_total 1.0\n"]

    yield from serve(app)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run_script(port: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TEAMS_NOTIFY_METRICS_PORT"}
    if port is not None:
        env["TEAMS_NOTIFY_METRICS_PORT"] = port
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_a_worker_serving_its_metrics_is_healthy(worker_metrics: int) -> None:
    result = run_script(str(worker_metrics))

    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("healthy")


def test_nothing_listening_on_the_metrics_port_is_unhealthy_saying_where_it_looked() -> None:
    port = free_port()

    result = run_script(str(port))

    assert result.returncode == 1
    assert f"127.0.0.1:{port}/metrics" in result.stdout


def test_another_exporter_on_the_port_is_not_taken_for_the_worker(other_exporter: int) -> None:
    result = run_script(str(other_exporter))

    assert result.returncode == 1
    assert "teams_notify_" in result.stdout


@pytest.mark.parametrize("port", ["0", "http", "70000"])
def test_a_metrics_port_that_is_off_or_no_port_is_unhealthy_naming_the_variable(port: str) -> None:
    result = run_script(port)

    assert result.returncode == 1
    assert "TEAMS_NOTIFY_METRICS_PORT" in result.stdout


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_without_the_variable_the_check_asks_the_workers_default_port(
    unset: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthcheck = load_script()
    asked: list[str] = []
    monkeypatch.setattr(healthcheck, "check", asked.append)
    if unset is None:
        monkeypatch.delenv("TEAMS_NOTIFY_METRICS_PORT", raising=False)
    else:
        monkeypatch.setenv("TEAMS_NOTIFY_METRICS_PORT", unset)

    assert healthcheck.main() == 0
    assert asked == ["9808"]
