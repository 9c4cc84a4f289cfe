"""What the worker processes cost while a scenario runs: CPU seconds and peak resident memory.

A thread samples every worker process and its pool children (psutil, `children(recursive=True)`) every
half second: user + system CPU seconds and RSS. Peak RSS is the larger of the highest sample and the
kernel's high-water mark (`VmHWM` in /proc/PID/status, where there is one). A process that dies keeps its
last sample. psutil is imported here, lazily, and never by the worker itself.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.bench import figures

#: Seconds between samples.
INTERVAL = 0.5
MB = 1024 * 1024


def vmhwm_bytes(status: str) -> int | None:
    """The peak RSS from the text of /proc/PID/status (its `VmHWM:  1234 kB` line), None without one."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            value, _, unit = line.split(":", 1)[1].strip().partition(" ")
            return int(value) * (1024 if unit.strip().lower() == "kb" else 1)
    return None


def _read_vmhwm(pid: int) -> int | None:
    try:
        return vmhwm_bytes(Path(f"/proc/{pid}/status").read_text())
    except OSError:  # not Linux, or the process has gone
        return None


@dataclass
class Usage:
    """Per process: whose it is, CPU seconds at the first and last sample, and the peak RSS in bytes."""

    owner: dict[int, tuple[str, str]] = field(default_factory=dict)
    cpu_before: dict[int, float] = field(default_factory=dict)
    cpu_after: dict[int, float] = field(default_factory=dict)
    peak_rss: dict[int, int] = field(default_factory=dict)

    def figures(self, requests: int) -> dict[str, Any]:
        """The scenario's figures: total CPU, CPU ms per Graph request, peak RSS (the max, and per process)."""
        used = {pid: self.cpu_after[pid] - self.cpu_before.get(pid, 0.0) for pid in self.cpu_after}
        peaks = {pid: round(self.peak_rss.get(pid, 0) / MB, 1) for pid in self.owner}
        processes = [
            {
                "node": node,
                "role": role,
                "pid": pid,
                "cpu_s": round(used.get(pid, 0.0), 3),
                "peak_rss_mb": peaks[pid],
            }
            for pid, (node, role) in sorted(self.owner.items(), key=lambda item: item[1])
        ]
        return {
            "worker_cpu_s": round(sum(used.values()), 3),
            "worker_cpu_ms_per_request": figures.cpu_ms_per_request(self.cpu_before, self.cpu_after, requests),
            "worker_peak_rss_mb": max(peaks.values(), default=None),
            "worker_processes": processes,
        }


class ProcessSampler:
    """Samples named root processes and their descendants in a thread until stopped."""

    def __init__(self, roots: Mapping[str, int], interval: float = INTERVAL) -> None:
        self._psutil: Any = importlib.import_module("psutil")  # the bench extra's; untyped, hence Any
        self._roots = dict(roots)
        self._interval = interval
        self._handles: dict[int, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.usage = Usage()

    def start(self) -> ProcessSampler:
        """Takes the first sample (the baseline) and starts sampling."""
        self._sample(baseline=True)
        self._thread = threading.Thread(target=self._run, name="teams-notify-bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Usage:
        """Takes a last sample and stops; idempotent."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._thread = None
            self._sample(baseline=False)
        return self.usage

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample(baseline=False)

    def _processes(self) -> list[tuple[int, str, str, Any]]:
        found = []
        for node, pid in self._roots.items():
            root = self._handle(pid)
            if root is None:
                continue
            found.append((pid, node, "worker", root))
            try:
                children = root.children(recursive=True)
            except self._psutil.Error:
                continue
            for child in children:
                handle = self._handles.setdefault(child.pid, child)
                found.append((child.pid, node, "pool", handle))
        return found

    def _handle(self, pid: int) -> Any:
        if pid not in self._handles:
            try:
                self._handles[pid] = self._psutil.Process(pid)
            except self._psutil.Error:
                return None
        return self._handles[pid]

    def _sample(self, *, baseline: bool) -> None:
        with self._lock:
            for pid, node, role, handle in self._processes():
                try:
                    with handle.oneshot():
                        times = handle.cpu_times()
                        rss = int(handle.memory_info().rss)
                except self._psutil.Error:  # it exited between the listing and the reading
                    continue
                cpu = float(times.user + times.system)
                usage = self.usage
                usage.owner[pid] = (node, role)
                if baseline:
                    usage.cpu_before[pid] = cpu
                usage.cpu_after[pid] = cpu
                usage.peak_rss[pid] = max(usage.peak_rss.get(pid, 0), rss, _read_vmhwm(pid) or 0)
