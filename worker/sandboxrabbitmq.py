"""The sandbox's RabbitMQ: a throwaway node on free ports, with its own data, logs, Erlang cookie and epmd.

Part of worker.sandbox, which re-exports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from producers.errors import ConfigurationError
from worker.sandboxchild import SessionChild, free_port, wait_until


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
        self._child = SessionChild("rabbitmq")

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
        wait_until(lambda: amqp_answers(self.url), f"rabbitmq-server on port {self.port}", 90)
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
