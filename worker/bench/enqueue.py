"""`teams-notify bench --scenario enqueue`: what producers cost: a 1,000,000-recipient job and single sends.

Against a private Redis (no worker, no simulator), in a producer process of its own
(`worker.bench.producer`): the seconds it takes to enqueue a bulk job of a million GUID recipients, the
Redis memory it adds per recipient, the longest that Redis kept another client waiting meanwhile, single
`notify_user` enqueues a second, and the producer's peak RSS (at its start, with the million recipients
listed, and at the end of the enqueue).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from worker import sandbox
from worker.bench.outcome import Say


def enqueue(workdir: Path, timeout: float, say: Say) -> dict[str, Any]:
    """Runs the producer measurements in a child process; returns its figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = sandbox.RedisServer(workdir).start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worker.bench.producer", server.url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            (workdir / "producer.log").write_text(done.stderr)
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the producer process failed ({done.returncode}): {last}")
        result: dict[str, Any] = json.loads(done.stdout)
        say(f"enqueue: {result['enqueue_recipients']:,} recipients in {result['enqueue_s']:.2f}s")
        return result | {"logs": str(workdir)}
    finally:
        server.stop()
