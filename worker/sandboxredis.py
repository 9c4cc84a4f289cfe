"""The sandbox's Redis: a throwaway redis-server, or a master with replicas and Sentinels, on free ports.

Part of worker.sandbox, which re-exports it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, cast

import redis

from producers.errors import ConfigurationError
from worker.sandboxchild import SessionChild, free_port, terminate, wait_until


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
        wait_until(lambda: redis_answers(self.url), f"redis-server on port {self.port}")
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
        self._nodes = {port: SessionChild(f"redis-{port}") for port in self.node_ports}
        self._sentinels = {port: SessionChild(f"sentinel-{port}") for port in self.sentinel_ports}

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
        wait_until(lambda: self._replicas_online(master) == len(self.node_ports) - 1, "the replicas' first sync")
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
        wait_until(self._sentinels_agree, "the Sentinels discovering each other and the replicas")
        return self

    def _start_node(self, binary: str, port: int, master: int | None) -> None:
        options = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        options += ["--dbfilename", f"dump-{port}.rdb", "--appendonly", "yes", "--appendfilename", f"aof-{port}"]
        options += ["--appenddirname", f"aof-{port}", "--save", ""]
        if master is not None:
            options += ["--replicaof", "127.0.0.1", str(master)]
        self._nodes[port].spawn([binary, *options], self.directory / f"redis-{port}.log")
        wait_until(lambda: redis_answers(self.node_url(port)), f"redis-server on port {port}")

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

        wait_until(promoted, "a failover", timeout)
        return found[-1]

    def stop(self) -> None:
        """Stops the Sentinels, then the nodes."""
        for child in [*self._sentinels.values(), *self._nodes.values()]:
            child.stop()
