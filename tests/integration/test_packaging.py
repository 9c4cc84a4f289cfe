"""What a backend app gets from `pip install teams-notify` with no extra: the producers, and a console script
that names the extra to install. Installed for real into a fresh virtual environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from producers import Notifier
from tests.unit.notification_examples import USER, user_body

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: What setuptools builds the distribution from (what deploy/Dockerfile copies in too).
SOURCES = ("pyproject.toml", "README.md", "producers", "worker")
#: What the extras bring and a backend app must not get.
WORKER_PACKAGES = {"celery", "kombu", "msal", "httpx", "starlette", "uvicorn", "trustme", "rich", "typer"}
#: What the base install may hold: the distribution, redis, pydantic and theirs.
MOST_DISTRIBUTIONS = 10
WORKER_LINE = "teams-notify worker needs the worker extra: pip install 'teams-notify[worker]'"
PROGRAM_LINE = "teams-notify needs the worker extra: pip install 'teams-notify[worker]'"
SIMULATOR_LINE = "teams-notify simulator needs the simulator extra: pip install 'teams-notify[simulator]'"
#: Run in the fresh environment: enqueue one job, and say which worker dependencies got imported doing so.
ENQUEUE = """
import json, sys
from producers import Notifier
notifier = Notifier(redis_url=sys.argv[1])
job_id = notifier.notify_user(sys.argv[2], json.loads(sys.argv[3]))
loaded = {name.split(".")[0] for name in sys.modules} & {*json.loads(sys.argv[4]), "worker"}
print(json.dumps({"job_id": job_id, "status": notifier.status(job_id), "loaded": sorted(loaded)}))
"""
DISTRIBUTIONS = """
import json
from importlib import metadata
dist = metadata.distribution("teams-notify")
print(json.dumps({
    "installed": sorted(d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()),
    "requires": [r for r in dist.requires or [] if "extra ==" not in r],
}))
"""


class Environment:
    """A virtual environment in a directory of its own; it runs its programs from there, never from the repo."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.bin = home / "venv" / "bin"

    def run(
        self, argv: Sequence[str], settings: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs a program with no PYTHON* or TEAMS_NOTIFY_* variable of the test's own, but these settings."""
        env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "TEAMS_NOTIFY_"))}
        env.update(settings or {})
        return subprocess.run(
            list(argv), cwd=self.home, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def python(self, script: str, *args: str) -> Any:
        """Runs a script in isolated mode and returns the JSON it prints."""
        done = self.run([str(self.bin / "python"), "-I", "-c", script, *args])
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def teams_notify(self, *argv: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return self.run([str(self.bin / "teams-notify"), *argv], settings)


def pip(*argv: str) -> None:
    """This interpreter's pip (it installs into another venv with --python)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """teams-notify's wheel, built once from a copy of its sources (pip builds in the source tree)."""
    home = tmp_path_factory.mktemp("wheel")
    source = home / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(home / "dist"), str(source))
    (built,) = (home / "dist").glob("teams_notify-*.whl")
    return built


def install(home: Path, requirement: str) -> Environment:
    """A fresh venv (without a pip of its own: quicker to make) with this requirement installed."""
    environment = Environment(home)
    made = environment.run([sys.executable, "-m", "venv", "--without-pip", str(home / "venv")])
    assert made.returncode == 0, made.stderr
    pip("--python", str(environment.bin / "python"), "install", "--quiet", requirement)
    return environment


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Environment:
    """What a backend app installs: `pip install teams-notify`."""
    return install(tmp_path_factory.mktemp("base-install"), str(wheel))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Environment:
    """What a worker host installs: `pip install 'teams-notify[worker]'` (as deploy/Dockerfile's default does)."""
    return install(tmp_path_factory.mktemp("worker-install"), f"{wheel}[worker]")


def test_the_base_install_is_the_producers_with_redis_and_pydantic_and_none_of_the_workers_packages(
    base: Environment,
) -> None:
    found = base.python(DISTRIBUTIONS)

    installed = set(found["installed"])
    assert sorted(requirement.split(">")[0].split("<")[0] for requirement in found["requires"]) == ["pydantic", "redis"]
    assert {"teams-notify", "redis", "pydantic"} <= installed
    assert not installed & WORKER_PACKAGES, installed & WORKER_PACKAGES
    assert len(installed) <= MOST_DISTRIBUTIONS, sorted(installed)


def test_a_backend_app_enqueues_a_job_with_the_base_install_alone(base: Environment, redis_url: str) -> None:
    result = base.python(ENQUEUE, redis_url, USER, json.dumps(user_body()), json.dumps(sorted(WORKER_PACKAGES)))

    assert result["loaded"] == [], "the producers imported worker code or its dependencies"
    assert result["status"]["state"] == "queued"
    assert result["status"]["requests"]["total"] == 1
    notifier = Notifier(redis_url=redis_url)
    try:
        assert notifier.status(result["job_id"]) == result["status"], "the job is in the fleet's Redis"
    finally:
        notifier.close()


@pytest.mark.parametrize(
    ("program", "argv", "line"),
    [
        pytest.param("teams-notify", ["worker", "-c", "4"], WORKER_LINE, id="worker"),
        pytest.param("python", ["-I", "-m", "worker", "worker"], WORKER_LINE, id="python -m worker"),
        pytest.param("teams-notify", ["--help"], PROGRAM_LINE, id="--help"),
        pytest.param("teams-notify", ["simulator"], SIMULATOR_LINE, id="simulator"),
    ],
)
def test_a_command_of_the_base_install_names_the_extra_to_install_in_one_line_and_exits_2(
    base: Environment, program: str, argv: list[str], line: str
) -> None:
    done = base.run([str(base.bin / program), *argv])

    assert (done.returncode, done.stderr, done.stdout) == (2, line + "\n", "")


def test_the_worker_extra_brings_no_simulator_and_no_bench_package(fleet: Environment) -> None:
    installed = set(fleet.python(DISTRIBUTIONS)["installed"])

    assert {"celery", "msal", "httpx", "typer", "rich", "prometheus-client", "tenacity"} <= installed
    assert not installed & {"starlette", "uvicorn", "trustme", "matplotlib", "msgraph-sdk", "azure-identity"}


@pytest.mark.parametrize(
    "argv", [["worker", "--help"], ["--help"], ["send", "--help"], ["dead-letters", "--help"]], ids=" ".join
)
def test_with_the_worker_extra_alone_the_workers_commands_run(fleet: Environment, argv: list[str]) -> None:
    done = fleet.teams_notify(*argv)

    assert done.returncode == 0, done.stderr
    assert "Usage: teams-notify" in done.stdout


def test_with_the_worker_extra_alone_an_operator_reads_the_fleets_status(fleet: Environment, redis_url: str) -> None:
    done = fleet.teams_notify("status", "--json", TEAMS_NOTIFY_REDIS_URL=redis_url)

    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), dict)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        pytest.param(["simulator", "--port", "0"], SIMULATOR_LINE, id="simulator"),
        pytest.param(
            ["bench"], "teams-notify bench needs the bench extra: pip install 'teams-notify[bench]'", id="bench"
        ),
        pytest.param(
            ["demo"],
            "teams-notify demo needs the worker and simulator extras: pip install 'teams-notify[worker,simulator]'",
            id="demo",
        ),
    ],
)
def test_with_the_worker_extra_alone_the_other_commands_name_their_extra(
    fleet: Environment, argv: list[str], line: str
) -> None:
    done = fleet.teams_notify(*argv)

    assert (done.returncode, done.stderr, done.stdout) == (2, line + "\n", "")
