"""A local fleet in child processes: a private redis-server and `teams-notify worker`s, and for the
high-availability layouts a private RabbitMQ node and a Redis master with replicas and Sentinels.

The demo, the integration tests and the benchmarks all start what they need through this module, so there
is one way to start, wait for and stop each piece.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, cast

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from producers.errors import ConfigurationError
from worker import broker

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
    return answers(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1))


def answers(client: redis.Redis) -> bool:
    """True when the client's Redis answers PING; the client is closed."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT) -> None:
    """Stops a child that may still run: SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
        terminate(self._process)


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


class _Child:
    """A server child process in a session of its own, so that it and everything it starts stop together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the whole session, as a crash of the machine's process would be."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if not self.running():
            return
        assert self.process is not None
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def rabbitmq_server() -> str:
    """The rabbitmq-server script that runs as the calling user (Debian's /usr/sbin one switches users)."""
    for candidate in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigurationError("rabbitmq-server is not installed: run the README's set-up (./run setup)")


def amqp_answers(url: str) -> bool:
    """True when a RabbitMQ node accepts an AMQP login at the URL."""
    from kombu import Connection  # noqa: PLC0415 - only the RabbitMQ sandbox needs it

    try:
        with Connection(url, connect_timeout=1) as conn:
            conn.connect()
        return True
    except Exception:  # refused, reset, not yet accepting logins: not ready
        return False


class RabbitMQNode:
    """A throwaway RabbitMQ node on free ports (AMQP, distribution, its own epmd), with its own data, logs
    and Erlang cookie under one directory: it never meets a node the machine runs (on 5672, say).

    `kill` crashes it (SIGKILL); `restart` brings it back on the same ports and data, as a supervisor would.
    """

    def __init__(self, directory: Path | None = None, *, consumer_timeout_ms: int = 900_000) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="teams-notify-rabbitmq-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.consumer_timeout_ms = consumer_timeout_ms
        self.port = self.dist_port = self.epmd_port = 0
        self._child = _Child("rabbitmq")

    @property
    def node_name(self) -> str:
        """The Erlang node name, unique to this node's port."""
        return f"teams-notify-{self.port}@localhost"

    @property
    def url(self) -> str:
        """Its AMQP URL (the default vhost, user guest, which RabbitMQ allows from the loopback only)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> RabbitMQNode:
        """Starts it (on the ports it had, if it ran before) and waits until it accepts a login."""
        binary = rabbitmq_server()
        while not self.port or len({self.port, self.dist_port, self.epmd_port}) < 3:
            self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        config = self.directory / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"consumer_timeout = {self.consumer_timeout_ms}\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env |= {
            "HOME": str(self.directory),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
        }
        self._child.spawn([binary], self.directory / "rabbitmq-server.log", env)
        _wait(lambda: amqp_answers(self.url), f"rabbitmq-server on port {self.port}", 90)
        return self

    def kill(self) -> None:
        """Kills the node at once (SIGKILL), as a crash would."""
        self._child.kill()

    def restart(self) -> RabbitMQNode:
        """Starts it again on the same ports and data (after `kill` or `stop`)."""
        if self._child.running():
            raise RuntimeError("rabbitmq-server is still running")
        return self.start()

    def stop(self) -> None:
        """Stops the node (SIGTERM: RabbitMQ's own orderly shutdown), then its epmd."""
        self._child.stop()
        epmd = shutil.which("epmd")
        if epmd and self.epmd_port:
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )


class RedisSentinelCluster:
    """A Redis master, its replicas and three Sentinels watching them, all on free ports.

    Its `url` is the fleet's `redis+sentinel://` form. `kill_master` crashes whichever node is the master
    now; the Sentinels then promote a replica (`wait_for_failover`) within about `down_after_ms` plus a second.
    """

    MASTER_NAME = "teams-notify"

    def __init__(
        self,
        directory: Path | None = None,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 3000,
        failover_timeout_ms: int = 10_000,
    ) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="teams-notify-sentinel-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.node_ports = [free_port() for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._nodes = {port: _Child(f"redis-{port}") for port in self.node_ports}
        self._sentinels = {port: _Child(f"sentinel-{port}") for port in self.sentinel_ports}

    @property
    def url(self) -> str:
        """The store's URL through the Sentinels, database 0."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.MASTER_NAME}/0"

    def node_url(self, port: int) -> str:
        """One Redis node's own URL."""
        return f"redis://127.0.0.1:{port}/0"

    def start(self) -> RedisSentinelCluster:
        """Starts the master, the replicas and the Sentinels; returns once the Sentinels know them all."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigurationError("redis-server is not installed: run the README's set-up (./run setup)")
        master = self.node_ports[0]
        for port in self.node_ports:
            self._start_node(binary, port, None if port == master else master)
        _wait(lambda: self._replicas_online(master) == len(self.node_ports) - 1, "the replicas' first sync")
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"  # Sentinel rewrites it as it learns
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {master} {max(2, len(self.sentinel_ports) // 2 + 1)}\n"
                f"sentinel down-after-milliseconds {self.MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.MASTER_NAME} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.MASTER_NAME} 1\n"
            )
            self._sentinels[port].spawn([binary, str(config), "--sentinel"], self.directory / f"sentinel-{port}.log")
        _wait(self._sentinels_agree, "the Sentinels discovering each other and the replicas")
        return self

    def _start_node(self, binary: str, port: int, master: int | None) -> None:
        options = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        options += ["--dbfilename", f"dump-{port}.rdb", "--appendonly", "yes", "--appendfilename", f"aof-{port}"]
        options += ["--appenddirname", f"aof-{port}", "--save", ""]
        if master is not None:
            options += ["--replicaof", "127.0.0.1", str(master)]
        self._nodes[port].spawn([binary, *options], self.directory / f"redis-{port}.log")
        _wait(lambda: redis_answers(self.node_url(port)), f"redis-server on port {port}")

    def _replicas_online(self, master: int) -> int:
        client = redis.Redis(port=master, socket_timeout=1, decode_responses=True)
        try:
            info = client.info("replication")
            return sum(1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online")
        except redis.RedisError:
            return 0
        finally:
            client.close()

    def _sentinels_agree(self) -> bool:
        replicas = len(self.node_ports) - 1
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
            try:
                state = cast(dict[str, Any], client.sentinel_master(self.MASTER_NAME))
                if int(state["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                    return False
                if int(state["num-slaves"]) < replicas:
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    def master(self) -> tuple[str, int]:
        """The master's address, as the Sentinels say now."""
        from producers.connection import SentinelURL  # noqa: PLC0415 - the fleet's own reading of the URL

        return SentinelURL.parse(self.url).master_address()

    def kill_master(self) -> int:
        """Kills the current master at once (SIGKILL); returns its port."""
        _, port = self.master()
        self._nodes[port].kill()
        return port

    def restart_node(self, port: int) -> None:
        """Starts a killed node again on its port and data; the Sentinels make it a replica of the master."""
        binary = shutil.which("redis-server")
        assert binary is not None
        self._start_node(binary, port, None)

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> tuple[str, int]:
        """Waits until the Sentinels name another master than `old_port` and it accepts writes; returns it."""
        found: list[tuple[str, int]] = []

        def promoted() -> bool:
            try:
                host, port = self.master()
            except redis.RedisError:
                return False
            if port == old_port:
                return False
            client = redis.Redis(host=host, port=port, socket_timeout=1)
            try:
                if client.info("replication").get("role") != "master":
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
            found.append((host, port))
            return True

        _wait(promoted, "a failover", timeout)
        return found[-1]

    def stop(self) -> None:
        """Stops the Sentinels, then the nodes."""
        for child in [*self._sentinels.values(), *self._nodes.values()]:
            child.stop()
