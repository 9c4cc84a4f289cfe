"""What the deploy/ tests share: where the files are, how to read them, and what the worker really accepts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = ROOT / "tests" / "schemas"

#: Variables the worker's libraries read besides the TEAMS_NOTIFY_* settings (README: TLS trust).
TLS_VARIABLES = {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"}


def yaml_documents(path: Path) -> list[Any]:
    """Every document of a YAML file, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def known_variables() -> set[str]:
    """Every TEAMS_NOTIFY_* name the code of the producers and the worker mentions, plus the TLS ones."""
    names: set[str] = set(TLS_VARIABLES)
    for source in [*ROOT.glob("producers/**/*.py"), *ROOT.glob("worker/**/*.py")]:
        names.update(re.findall(r"\b(TEAMS_NOTIFY_[A-Z0-9_]+)\b", source.read_text(encoding="utf-8")))
    return names


def env_file(path: Path) -> dict[str, str]:
    """A KEY=value file as Compose and systemd read it: comments and blank lines skipped."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=value"
            values[key.strip()] = value.strip()
    return values


class Unset(Exception):
    """A `${VAR:?message}` whose variable is unset or empty: Compose stops with the message."""


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (`${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `$$`) over a document."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = variables.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and missing:
            raise Unset(f"{name}: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def metric_names() -> set[str]:
    """Every series name the worker's Prometheus registry can export (a histogram's _sum, _count, _bucket...)."""
    import prometheus_client  # noqa: PLC0415 - only the tests that ask need the worker's metrics

    import worker.observe  # noqa: F401, PLC0415 - registers the worker's metrics

    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"]}
    names: set[str] = set()
    for family in prometheus_client.REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
    return names


@dataclass
class Stage:
    """One FROM ... AS name and its instructions, as (INSTRUCTION, arguments) pairs."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]

    def one(self, keyword: str) -> str:
        (args,) = self.all(keyword)
        return args


def stages() -> list[Stage]:
    """The Dockerfile's stages, its continuation lines joined and its comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw.strip())
        pending = ""
    found: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            found.append(Stage(name.strip(), base.strip()))
        elif found:
            found[-1].instructions.append((keyword, " ".join(args.split())))
    return found
