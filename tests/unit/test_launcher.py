"""The `teams-notify` console script: one line naming the extra to install, or the CLI when it is installed."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Callable, Iterable
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from worker import cli, launcher

ROOT = Path(__file__).resolve().parents[2]
WORKER_LINE = "teams-notify worker needs the worker extra: pip install 'teams-notify[worker]'"
PROGRAM_LINE = "teams-notify needs the worker extra: pip install 'teams-notify[worker]'"
SIMULATOR_LINE = "teams-notify simulator needs the simulator extra: pip install 'teams-notify[simulator]'"
BENCH_LINE = "teams-notify bench needs the bench extra: pip install 'teams-notify[bench]'"
DEMO_LINE = "teams-notify demo needs the worker and simulator extras: pip install 'teams-notify[worker,simulator]'"


def installed_except(*missing: str) -> Callable[[str], ModuleSpec | None]:
    """A find_spec for which every module is installed but these."""

    def find_spec(name: str) -> ModuleSpec | None:
        return None if name in missing else ModuleSpec(name, loader=None)

    return find_spec


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines worker.cli.main was called with (instead of running the CLI)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda: calls.append(sys.argv[1:]))
    return calls


def launch(monkeypatch: pytest.MonkeyPatch, argv: list[str], *missing: str) -> int | str | None:
    """Runs the console script on a command line with these modules missing; its exit code (None: returned)."""
    monkeypatch.setattr(launcher, "find_spec", installed_except(*missing))
    monkeypatch.setattr(sys, "argv", ["teams-notify", *argv])
    try:
        launcher.main()
    except SystemExit as exc:
        return exc.code
    return None


@pytest.mark.parametrize(
    ("argv", "missing", "line"),
    [
        (["worker", "-c", "4"], "celery", WORKER_LINE),
        (["worker"], "msal", WORKER_LINE),
        (["--help"], "typer", PROGRAM_LINE),
        ([], "rich", PROGRAM_LINE),
        (
            ["dead-letters", "list", "--json"],
            "httpx",
            "teams-notify dead-letters needs the worker extra: pip install 'teams-notify[worker]'",
        ),
        (["simulator", "--port", "0"], "uvicorn", SIMULATOR_LINE),
        (["simulator"], "prometheus_client", SIMULATOR_LINE),
        (["bench", "--json"], "matplotlib", BENCH_LINE),
        (["bench"], "azure.identity", BENCH_LINE),
        (["bench"], "starlette", BENCH_LINE),
        (["demo"], "trustme", DEMO_LINE),
        (["demo", "--recipients", "10"], "celery", DEMO_LINE),
    ],
)
def test_a_subcommand_whose_extra_is_missing_names_it_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dispatched: list[list[str]],
    argv: list[str],
    missing: str,
    line: str,
) -> None:
    code = launch(monkeypatch, argv, missing)

    out, err = capsys.readouterr()
    assert code == 2
    assert err == line + "\n"
    assert out == ""
    assert dispatched == []


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["worker", "-c", "4"], ()),
        (["--help"], ()),
        (["status", "--json"], ()),
        (["simulator", "--port", "0"], ()),
        (["bench", "--scenario", "all"], ()),
        (["demo"], ()),
        (["worker"], ("matplotlib", "psutil", "msgraph", "azure.identity", "starlette", "uvicorn", "trustme")),
        (["send", "--user", "u", "--body", "-"], ("matplotlib", "starlette")),
        (["simulator"], ("matplotlib", "msgraph")),
        (["demo"], ("psutil", "azure.identity")),
    ],
)
def test_with_the_extras_it_needs_installed_a_subcommand_runs_the_cli_with_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dispatched: list[list[str]],
    argv: list[str],
    missing: tuple[str, ...],
) -> None:
    code = launch(monkeypatch, argv, *missing)

    assert code is None
    assert dispatched == [argv]
    assert capsys.readouterr().err == ""


def test_a_module_whose_parent_package_is_missing_counts_as_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dispatched: list[list[str]]
) -> None:
    def find_spec(name: str) -> ModuleSpec | None:
        if name == "azure.identity":
            raise ModuleNotFoundError("No module named 'azure'", name="azure")
        return ModuleSpec(name, loader=None)

    monkeypatch.setattr(launcher, "find_spec", find_spec)
    monkeypatch.setattr(sys, "argv", ["teams-notify", "bench"])

    with pytest.raises(SystemExit) as exited:
        launcher.main()

    assert exited.value.code == 2
    assert capsys.readouterr().err == BENCH_LINE + "\n"
    assert dispatched == []


def test_the_subcommand_is_the_first_word_that_is_not_an_option() -> None:
    assert launcher.subcommand(["--help"]) is None
    assert launcher.subcommand([]) is None
    assert launcher.subcommand(["--help", "bench"]) == "bench"
    assert launcher.subcommand(["simulator", "--port", "8443"]) == "simulator"


def optional_dependencies() -> dict[str, list[str]]:
    """pyproject.toml's extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(project["optional-dependencies"])


def test_the_launcher_knows_the_extras_pyproject_declares_and_what_each_includes() -> None:
    extras = optional_dependencies()

    for extra, modules in launcher.EXTRA_MODULES.items():
        assert extra in extras
        assert modules
        included = [req for req in extras[extra] if req.startswith("teams-notify[")]
        names = [name for req in included for name in req.removeprefix("teams-notify[").rstrip("]").split(",")]
        assert tuple(names) == launcher.EXTRA_INCLUDES[extra], extra
    assert extras["dev"][0] == "teams-notify[worker,simulator,bench]", "dev is a full development environment"


def test_the_console_script_is_the_launcher() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert project["scripts"] == {"teams-notify": "worker.launcher:main"}
    assert "from worker.launcher import main" in (ROOT / "worker" / "__main__.py").read_text()


def third_party_imports(files: Iterable[Path]) -> set[str]:
    """The top-level names of what these modules import from outside the standard library and the repo."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"producers", "worker"}


def allowed(*extras: str) -> set[str]:
    """The top-level modules of the base install and these extras."""
    return {"redis", "pydantic"} | {name.split(".")[0] for name in launcher.modules_of(extras)}


@pytest.mark.parametrize(
    ("package", "extras"),
    [("producers", ()), ("worker", ("worker",)), ("worker/simulator", ("simulator",)), ("worker/bench", ("bench",))],
)
def test_every_package_imports_only_what_its_install_brings(package: str, extras: tuple[str, ...]) -> None:
    files = (ROOT / package).glob("*.py") if package == "worker" else (ROOT / package).rglob("*.py")

    stray = third_party_imports(files) - allowed(*extras)

    assert not stray, f"{package} imports {sorted(stray)}: add them to an extra in pyproject.toml and launcher.py"


def test_the_launcher_imports_the_standard_library_alone_and_the_cli_only_inside_main() -> None:
    tree = ast.parse((ROOT / "worker" / "launcher.py").read_text())
    top_level = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }

    assert third_party_imports([ROOT / "worker" / "launcher.py"]) == set()
    assert not any(str(name).startswith(("worker", "producers")) for name in top_level)


def test_a_metrics_directory_that_does_not_exist_is_one_line_and_exit_2_and_an_existing_one_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dispatched: list[list[str]], tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "gone"))
    assert launch(monkeypatch, ["worker"]) == 2
    err = capsys.readouterr().err
    gone = tmp_path / "gone"
    assert err == f"teams-notify: error: PROMETHEUS_MULTIPROC_DIR='{gone}' is not a directory: create it, or unset it\n"
    assert dispatched == []

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert launch(monkeypatch, ["worker"]) is None
    assert dispatched == [["worker"]]
