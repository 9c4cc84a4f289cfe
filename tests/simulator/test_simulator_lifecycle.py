"""Starting and stopping: certificates kept across restarts, simulator.json, the CLI command and its signals."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import certifi
import httpx
import pytest
import typer
from typer.testing import CliRunner

import worker.simulator
from worker.simulator import Simulator, SimulatorConfig, SimulatorError
from worker.simulator.command import simulator_command

CLI = (
    "import typer; from worker.simulator.command import simulator_command; "
    "app = typer.Typer(); app.command()(simulator_command); app()"
)


def test_the_package_exports_its_public_names() -> None:
    assert sorted(worker.simulator.__all__) == ["Simulator", "SimulatorConfig", "SimulatorError", "serve"]


def test_a_restart_keeps_the_ca_and_simulator_json_lives_while_listening(tmp_path: Path) -> None:
    config = SimulatorConfig(port=0, state_dir=tmp_path)
    with Simulator(config) as first:
        assert first.port > 0
        info = json.loads((tmp_path / "simulator.json").read_text())
        assert info["port"] == first.port
        assert info["graph_url"] == f"https://127.0.0.1:{first.port}/v1.0"
        assert info["authority_host"] == f"https://127.0.0.1:{first.port}"
        assert info["ca_path"] == str(first.ca_path)
        assert info["bundle_path"] == str(first.bundle_path)
        assert {"pid"} <= info.keys()
        ca = first.ca_path.read_bytes()
    assert not (tmp_path / "simulator.json").exists()
    bundle = (tmp_path / "bundle.pem").read_bytes()
    assert bundle.startswith(Path(certifi.where()).read_bytes()[:200])
    assert bundle.rstrip().endswith(ca.rstrip())
    with Simulator(config) as second:
        assert second.ca_path.read_bytes() == ca
        with httpx.Client(verify=second.ssl_context()) as client:
            assert client.get(f"{second.authority_host}/_simulator/stats").status_code == 200


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with Simulator(SimulatorConfig(port=0, state_dir=tmp_path)) as first:
        taken = SimulatorConfig(port=first.port, state_dir=tmp_path / "other")
        with pytest.raises(SimulatorError, match="cannot start"):
            Simulator(taken).start()
        assert json.loads((tmp_path / "simulator.json").read_text())["port"] == first.port


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--error-rate", "2"], "--error-rate"),
        (["--rate-limits", "bulk=3"], "--rate-limits"),
        (["--client", "no-secret"], "--client"),
        (["--error-statuses", "200"], "--error-statuses"),
        (["--port", "70000"], "--port"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_code_2(args: list[str], option: str) -> None:
    app = typer.Typer()
    app.command()(simulator_command)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: {option}")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_until_a_signal_and_then_exits_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "--port", "0", "--state-dir", str(tmp_path), "--client", "app=hunter2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = []
        assert process.stderr is not None
        for line in process.stderr:
            banner.append(line)
            if "Press Ctrl+C" in line:
                break
        text = "".join(banner)
        info = json.loads((tmp_path / "simulator.json").read_text())
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            assert f"export {name}={info['bundle_path']}" in text
        assert f"export TEAMS_NOTIFY_GRAPH_URL={info['graph_url']}" in text
        assert f"export TEAMS_NOTIFY_AUTHORITY_HOST={info['authority_host']}" in text
        assert "hunter2" not in text
        with httpx.Client(verify=ssl.create_default_context(cafile=info["ca_path"])) as client:
            assert client.get(f"{info['authority_host']}/_simulator/stats").status_code == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (tmp_path / "simulator.json").exists()


def test_start_returns_only_once_listening(tmp_path: Path) -> None:
    simulator = Simulator(SimulatorConfig(port=0, state_dir=tmp_path))
    started = time.perf_counter()
    simulator.start()
    try:
        assert time.perf_counter() - started < 5
        with httpx.Client(verify=simulator.ssl_context()) as client:
            assert client.get(f"{simulator.authority_host}/_simulator/info").json()["graph_url"] == simulator.graph_url
    finally:
        simulator.stop()
    assert not simulator.running
