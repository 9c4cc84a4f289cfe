"""TLS for the tests: CAs and server certificates (trustme), a TLS-only redis-server, CA bundles."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

from worker.sandbox import answers, free_port, terminate

#: Seconds a TLS redis-server gets to answer.
START_TIMEOUT = 15.0


def write_bundle(path: Path, *pem_files: Path) -> Path:
    """A CA bundle: the PEM files one after the other."""
    path.write_text("".join(pem.read_text().rstrip("\n") + "\n" for pem in pem_files))
    return path


def write_ca(ca: trustme.CA, path: Path) -> Path:
    """The CA's certificate as a PEM file."""
    ca.cert_pem.write_to_path(str(path))
    return path


@contextlib.contextmanager
def handshake_server(ca: trustme.CA, *names: str) -> Iterator[int]:
    """A TLS listener on a free port of 127.0.0.1 with a certificate from `ca` for `names`, which only shakes
    hands and hangs up: enough to see a client accept or refuse the certificate. Yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(2)
                context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, name="handshake-server", daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()


class TLSRedis:
    """A throwaway redis-server that speaks TLS only (no plain port), with a password, on a free port.

    Its certificate is issued by `ca` for `names` (host names or IP addresses). Fails the test with a clear
    message if redis-server cannot listen over TLS (a build without TLS support), never skips.
    """

    def __init__(self, directory: Path, ca: trustme.CA, names: tuple[str, ...], password: str) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_path = write_ca(ca, directory / "redis-ca.pem")
        self.password = password
        self.port = 0
        self._certificate = ca.issue_cert(*names)
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, host: str = "localhost") -> str:
        """Its `rediss://` URL with the password, database 0."""
        return f"rediss://:{self.password}@{host}:{self.port}/0"

    def client(self, ca_path: Path | None = None) -> redis.Redis:
        """A client that trusts the server's own CA (or `ca_path`), by IP address so that any name works."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            ssl=True,
            ssl_ca_certs=str(ca_path or self.ca_path),
            ssl_check_hostname=False,
            socket_connect_timeout=1,
            socket_timeout=2,
        )

    def start(self) -> TLSRedis:
        """Starts it and waits until it answers over TLS."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run the README's set-up (./run setup)")
        cert, key = self.directory / "server.pem", self.directory / "server.key"
        self._certificate.cert_chain_pems[0].write_to_path(str(cert))
        self._certificate.private_key_pem.write_to_path(str(key))
        self.port = free_port()
        options = {
            "port": "0",
            "tls-port": str(self.port),
            "bind": "127.0.0.1",
            "tls-cert-file": str(cert),
            "tls-key-file": str(key),
            "tls-ca-cert-file": str(self.ca_path),
            "tls-auth-clients": "no",
            "requirepass": self.password,
            "save": "",
            "appendonly": "no",
            "dir": str(self.directory),
        }
        output = (self.directory / "redis.log").open("ab")
        with output:
            self._process = subprocess.Popen(
                [binary, *(item for key, value in options.items() for item in (f"--{key}", value))],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._wait(binary)
        return self

    def _wait(self, binary: str) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace").strip()
                pytest.fail(
                    f"{binary} could not listen over TLS (exit code {self._process.returncode}); it needs TLS "
                    f"support (Debian's redis-server 7 has it; a source build needs BUILD_TLS=yes):\n{log[-2000:]}"
                )
            if self._answers():
                return
            time.sleep(0.1)
        pytest.fail(f"a TLS-only redis-server on port {self.port} did not answer within {START_TIMEOUT:.0f}s")

    def _answers(self) -> bool:
        return answers(self.client())

    def stop(self) -> None:
        """Stops it."""
        terminate(self._process)
