"""deploy/Dockerfile and .dockerignore, read without a Docker engine: what they build and what they let in."""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib

import pytest
import yaml

from tests.deploy.helpers import DEPLOY, ROOT, Stage, stages
from worker import launcher


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument; anything else fails the test: shell form swallows SIGTERM."""
    value = json.loads(args)
    assert isinstance(value, list), f"{args!r} is not in exec form"
    return [str(item) for item in value]


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """The COPY instructions of a stage that copy from the build context: (sources, destination)."""
    found = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        found.append((paths[:-1], paths[-1]))
    return found


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps a path (relative to the repository root) out of the build context.

    Docker's rules: patterns in order, the last match wins, `!` re-includes, a match on a directory
    excludes what is under it, `**` matches any number of directories.
    """
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        globs = {glob, glob.removeprefix("**/")} if glob.startswith("**/") else {glob}
        if any(fnmatch.fnmatchcase(candidate, g) for candidate in candidates for g in globs):
            excluded = not negated
    return excluded


def test_the_image_builds_in_two_stages_from_one_base() -> None:
    build, runtime = stages()

    assert (build.name, runtime.name) == ("build", "runtime")
    assert build.base == runtime.base == "${PYTHON_IMAGE}", "the venv is copied: both stages need one Python"


def test_the_runtime_stage_copies_the_built_environment_and_installs_no_python_package() -> None:
    _, runtime = stages()
    runs = " ".join(runtime.all("RUN"))

    assert "pip" not in runs
    assert "--from=build /opt/teams-notify /opt/teams-notify" in runtime.all("COPY")
    assert "rm -rf /var/lib/apt/lists/*" in runs


def test_the_build_installs_the_extra_it_is_asked_for_from_its_own_wheels_only() -> None:
    build, _ = stages()
    run = build.one("RUN")

    assert build.all("ARG") == ["EXTRAS=worker"]
    assert 'pip wheel --wheel-dir /wheels ".[${EXTRAS}]"' in run
    assert '--no-index --find-links /wheels "teams-notify[${EXTRAS}]"' in run


def with_included(extras: set[str]) -> set[str]:
    """The extras and those they include (pyproject.toml's self-references, as the launcher knows them)."""
    return extras | {included for extra in extras for included in launcher.EXTRA_INCLUDES[extra]}


def default_extras() -> str:
    """The EXTRAS the build stage installs unless told otherwise."""
    (default,) = [arg.partition("=")[2] for arg in stages()[0].all("ARG") if arg.startswith("EXTRAS=")]
    return default


def images_built_by_compose() -> dict[str, tuple[str, list[str]]]:
    """Each Compose service built from this Dockerfile: (the EXTRAS it is built with, its command)."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    return {
        name: (str(service["build"].get("args", {}).get("EXTRAS", default_extras())), list(service["command"]))
        for name, service in services.items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def test_every_image_compose_builds_has_the_extras_its_subcommand_needs() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    _, runtime = stages()
    images = images_built_by_compose()
    runs = [*images.values(), (default_extras(), exec_form(runtime.one("CMD")))]

    assert {"worker", "simulator"} <= images.keys()
    for built_with, command in runs:
        chosen = set(built_with.split(","))
        needed = set(launcher.extras_for(launcher.subcommand(command)))
        assert chosen <= declared.keys(), f"pyproject.toml has no extra {built_with}"
        assert needed <= with_included(chosen), f"an image built with [{built_with}] runs {command}: needs {needed}"


def test_the_worker_runs_as_an_unprivileged_user() -> None:
    _, runtime = stages()

    user = runtime.one("USER")

    uid, _, gid = user.partition(":")
    assert int(uid) >= 1000
    assert int(gid) >= 1000
    assert f"--uid {uid}" in runtime.one("RUN")


def test_tini_hands_sigterm_to_teams_notify_whose_default_command_is_the_worker() -> None:
    _, runtime = stages()

    assert exec_form(runtime.one("ENTRYPOINT")) == ["tini", "--", "teams-notify"]
    assert exec_form(runtime.one("CMD")) == ["worker"]
    assert "tini" in runtime.one("RUN")


def test_the_health_check_runs_the_script_the_image_copies_in() -> None:
    _, runtime = stages()
    healthcheck = runtime.one("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")

    argv = exec_form(command)

    assert argv[0] == "python"
    ((sources, destination),) = copies(runtime)
    assert sources == ["deploy/healthcheck.py"]
    assert argv[1] == destination
    assert "--start-period=" in options
    assert "--interval=" in options


def test_the_metrics_port_the_image_exposes_is_the_one_the_worker_serves() -> None:
    _, runtime = stages()

    assert runtime.one("EXPOSE") == "9808"
    assert "TEAMS_NOTIFY_METRICS_PORT=9808" in runtime.one("ENV")


def test_every_package_setuptools_installs_is_copied_into_the_build() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    build, _ = stages()

    copied = {source for sources, _ in copies(build) for source in sources}

    assert packages <= copied, packages - copied
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied


def test_every_file_the_build_copies_exists_and_is_in_the_build_context() -> None:
    for stage in stages():
        for sources, _ in copies(stage):
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not dockerignored(source), f"{source} is in .dockerignore"
                if (ROOT / source).is_dir():
                    inside = [p for p in (ROOT / source).rglob("*.py") if "__pycache__" not in p.parts]
                    assert all(not dockerignored(str(p.relative_to(ROOT))) for p in inside)


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "deploy/.env",
        "credentials.env",
        "deploy/simulator.env",
        "client.pem",
        "deploy/kubernetes/client.key",
        ".git/config",
        ".venv/bin/python",
        "worker/__pycache__/cli.cpython-311.pyc",
        "tests/unit/test_models.py",
        "deploy/kubernetes/secret.example.yaml",
        "teams_notify.egg-info/PKG-INFO",
    ],
)
def test_secrets_local_state_and_what_the_image_does_not_need_stay_out_of_the_build_context(path: str) -> None:
    assert dockerignored(path)
