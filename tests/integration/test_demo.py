"""`teams-notify demo` as a new user runs it: everything started, delivered, reported and stopped."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_the_demo_delivers_every_notification_and_says_so() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--recipients", "300"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "every bulk recipient notified exactly once: yes" in shown.stdout
    assert "all delivered" in shown.stdout
