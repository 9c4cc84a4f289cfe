"""Runs the simulator: uvicorn over HTTPS in a background thread (`Simulator`) or in the foreground (`serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import uvicorn

from worker.simulator.app import DroppingH11Protocol, build_app
from worker.simulator.certs import CertificatePaths, ensure_certificates
from worker.simulator.config import SimulatorConfig
from worker.simulator.state import SimulatorState

#: How long `start()` waits for uvicorn to listen.
START_TIMEOUT = 15.0
#: How long `stop()` lets in-flight requests finish.
GRACEFUL_SHUTDOWN_SECONDS = 5
#: Idle keep-alive connections are kept this long, so pooled clients rarely race a server-side close.
KEEP_ALIVE_SECONDS = 75
INFO_FILE = "simulator.json"

T = TypeVar("T")


class SimulatorError(RuntimeError):
    """The simulator could not start (port taken, state directory unwritable, ...)."""


def _url_host(host: str) -> str:
    """The host to put in URLs: loopback for wildcard binds, brackets for IPv6 literals."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class Simulator:
    """The Graph + Entra simulator in this process; `start()` returns once it listens, `stop()` ends it."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        """Prepares a simulator for `config` (defaults otherwise); nothing is bound until `start()`."""
        self._initial = config or SimulatorConfig()
        self.state = SimulatorState(self._initial)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._port: int | None = None
        self._certs: CertificatePaths | None = None

    @property
    def config(self) -> SimulatorConfig:
        """The config in force (it changes with `reconfigure` and `PATCH /_simulator/config`)."""
        return self.state.config

    @property
    def state_dir(self) -> Path:
        """Where the CA, bundle, server certificate and `simulator.json` live."""
        return self._initial.resolved_state_dir

    @property
    def port(self) -> int:
        """The port listened on (the real one when the config asked for 0; known before start otherwise)."""
        if self._port is not None:
            return self._port
        if self._initial.port:
            return self._initial.port
        raise SimulatorError("the simulator is not started, so its free port is not chosen yet")

    @property
    def authority_host(self) -> str:
        """Entra's base URL: MSAL's authority is `{authority_host}/{tenant}`."""
        return f"https://{_url_host(self._initial.host)}:{self.port}"

    @property
    def graph_url(self) -> str:
        """Graph's base URL, version included."""
        return f"{self.authority_host}/v1.0"

    @property
    def ca_path(self) -> Path:
        """The simulator's CA certificate (PEM), alone."""
        return self.state_dir / "ca.pem"

    @property
    def bundle_path(self) -> Path:
        """certifi's bundle plus the simulator's CA: for SSL_CERT_FILE and REQUESTS_CA_BUNDLE."""
        return self.state_dir / "bundle.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the simulator's CA (for `httpx.Client(verify=...)`)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    @property
    def info_path(self) -> Path:
        """`simulator.json`, written while listening so other processes can find the simulator."""
        return self.state_dir / INFO_FILE

    @property
    def running(self) -> bool:
        """True while the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Simulator:
        """Writes the certificates, binds the port, starts uvicorn in a thread and waits until it listens."""
        if self.running:
            raise SimulatorError("the simulator is already running")
        config = self._initial
        try:
            self._certs = ensure_certificates(self.state_dir, config.cert_hostnames)
            sock = self._bind(config.host, config.port)
        except OSError as exc:
            raise SimulatorError(f"cannot start the simulator on {config.host}:{config.port}: {exc}") from exc
        self._port = sock.getsockname()[1]
        uv_config = uvicorn.Config(
            build_app(self.state),
            http=DroppingH11Protocol,
            lifespan="off",
            log_config=None,
            access_log=config.access_log,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            ssl_certfile=str(self._certs.server_cert),
            ssl_keyfile=str(self._certs.server_key),
            backlog=2048,
        )
        self._server = uvicorn.Server(uv_config)
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(sock,), name="teams-notify-simulator", daemon=True)
        self._thread.start()
        self._wait_started(sock)
        try:
            self._write_info()
        except OSError as exc:
            self.stop()
            raise SimulatorError(f"cannot write {self.info_path}: {exc}") from exc
        return self

    def stop(self) -> None:
        """Lets in-flight requests finish (briefly), stops uvicorn and removes `simulator.json`."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(GRACEFUL_SHUTDOWN_SECONDS + 5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        self._remove_info()
        self._server = self._thread = self._loop = None

    def __enter__(self) -> Simulator:
        """Starts the simulator for a `with` block."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stops it at the end of the block."""
        self.stop()

    def stats(self) -> dict[str, object]:
        """The same counters as `GET /_simulator/stats`."""
        return self._call(self.state.recorder.stats)

    def recorded_requests(self) -> list[dict[str, Any]]:
        """The same records as `GET /_simulator/requests`."""
        records: list[dict[str, Any]] = json.loads(self._call(self.state.recorder.records_json))
        return records

    def reset(self) -> None:
        """Same as `POST /_simulator/reset`."""
        self._call(self.state.reset)

    def reconfigure(self, **changes: object) -> SimulatorConfig:
        """Same as `PATCH /_simulator/config`; ValueError when a change is invalid."""
        return self._call(lambda: self.state.reconfigure(changes))

    def _call(self, func: Callable[[], T]) -> T:
        """Runs `func` on the server's event loop (the only thread that touches the state)."""
        loop = self._loop
        if loop is None or not self.running:
            return func()

        async def run() -> T:
            return func()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        """Binds before uvicorn starts, so port 0 resolves to a known port at once."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto must be IPPROTO_TCP (not 0): asyncio only turns Nagle off on accepted sockets that say so,
        # and with Nagle on every response with a body waits ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def _run(self, sock: socket.socket) -> None:
        """The server thread: its own event loop, uvicorn serving on the bound socket."""
        assert self._server is not None
        server = self._server

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start(), or lost at exit: the thread must not die loudly
            self._error = exc
        finally:
            sock.close()

    def _wait_started(self, sock: socket.socket) -> None:
        """Blocks until uvicorn listens, or raises why it could not."""
        assert self._server is not None
        assert self._thread is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                reason = self._error or "timed out"
                raise SimulatorError(f"the simulator did not start: {reason}")
            time.sleep(0.01)

    def _write_info(self) -> None:
        """Writes `simulator.json` atomically, for processes that discover the simulator by file."""
        info = {
            "pid": os.getpid(),
            "port": self.port,
            "graph_url": self.graph_url,
            "authority_host": self.authority_host,
            "ca_path": str(self.ca_path),
            "bundle_path": str(self.bundle_path),
        }
        tmp = self.info_path.with_name(f".{INFO_FILE}.{os.getpid()}.{self.port}.tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, self.info_path)

    def _remove_info(self) -> None:
        """Removes `simulator.json` if it still describes this simulator (another may have replaced it)."""
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(self.info_path.read_text())
            if info.get("pid") == os.getpid() and info.get("port") == self._port:
                self.info_path.unlink()


def serve(config: SimulatorConfig, *, on_ready: Callable[[Simulator], None] | None = None) -> None:
    """Runs the simulator until SIGINT or SIGTERM, then stops it cleanly; `on_ready` runs once it listens."""
    simulator = Simulator(config)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: Mapping[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        simulator.start()
        if on_ready is not None:
            on_ready(simulator)
        while simulator.running and not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
