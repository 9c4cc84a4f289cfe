"""The directory where a worker's processes keep their metrics when its pool is a set of processes.

prometheus-client's multiprocess mode (prometheus.github.io/client_python/multiprocess/) is chosen by
`PROMETHEUS_MULTIPROC_DIR` being in the environment when prometheus_client is imported: every process then
writes its samples to files of its own in that directory, and the one serving /metrics reads them all.
`teams-notify` imports prometheus_client as it starts (the CLI's logging and metrics live in one module), so a
worker with a process pool and no directory given makes a private one and re-executes itself, with the same
pid and command line, the variable set: exactly what an operator's wrapper would do. The re-executed worker
owns that directory and removes it at exit. A directory the operator set (systemd, Kubernetes) is used as
it is and never removed: it must be this worker's alone and empty at start (a `RuntimeDirectory=`, an
`emptyDir`).

Standard library only; this module reads and sets prometheus-client's own variable, not a setting of ours.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

#: prometheus-client's variable (its deprecated lower-case spelling too).
ENV = "PROMETHEUS_MULTIPROC_DIR"
LEGACY_ENV = "prometheus_multiproc_dir"
#: Set, to the same path, by a worker that made the directory and re-executed itself: the new image owns it.
#: Internal, and removed from the environment once read (the pool's children do not inherit it).
OWNER_ENV = "_TEAMS_NOTIFY_METRICS_DIR_OWNER"
#: Celery pools that run every task in the worker's own process: its memory holds all its metrics.
SINGLE_PROCESS_POOLS = frozenset({"threads", "solo", "gevent", "eventlet"})
#: Celery's default pool when a command line names none (`teams-notify worker` always names one).
DEFAULT_POOL = "prefork"


def pool_of(argv: Sequence[str]) -> str:
    """The Celery pool a `celery worker` command line asks for (`-P X`, `-PX`, `--pool X`, `--pool=X`)."""
    chosen = DEFAULT_POOL
    for at, arg in enumerate(argv):
        if arg in ("-P", "--pool") and at + 1 < len(argv):
            chosen = argv[at + 1]
        elif arg.startswith("--pool="):
            chosen = arg.removeprefix("--pool=")
        elif arg.startswith("-P") and len(arg) > 2:
            chosen = arg[2:].removeprefix("=")
    return chosen


def configured() -> str | None:
    """The multiprocess directory in the environment, or None."""
    return os.environ.get(ENV) or os.environ.get(LEGACY_ENV) or None


def needs_private_dir(port: int, argv: Sequence[str]) -> bool:
    """True when the worker serves metrics, its pool runs tasks in other processes, and no directory is set."""
    return port != 0 and pool_of(argv) not in SINGLE_PROCESS_POOLS and configured() is None


def reexec_with_private_dir(port: int) -> NoReturn:
    """Makes a private directory, sets it in the environment, and re-executes this program (same pid, same
    command line) so that prometheus_client is imported with it set. Raises OSError if it cannot."""
    path = tempfile.mkdtemp(prefix=f"teams-notify-metrics-{port}-")
    os.environ[ENV] = os.environ[OWNER_ENV] = path
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, sys.orig_argv)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        del os.environ[ENV], os.environ[OWNER_ENV]
        raise


@dataclass(frozen=True)
class MetricsDir:
    """The multiprocess directory of this worker; `owned` when the worker made it (and removes it at exit)."""

    path: str
    owned: bool
    creator: int = field(default_factory=os.getpid)

    def remove(self) -> None:
        """Removes the directory if this worker made it (only in the process that adopted it, never a child)."""
        if self.owned and os.getpid() == self.creator:
            shutil.rmtree(self.path, ignore_errors=True)


def adopt() -> MetricsDir | None:
    """The multiprocess directory this process runs with, or None when its metrics stay in memory."""
    path = configured()
    owner = os.environ.pop(OWNER_ENV, None)
    return MetricsDir(path, owned=owner == path) if path is not None else None
