"""`teams-notify bench`: the throughput run (`run_bench`) and the scenarios at Graph's limits (`run_scenarios`)."""

from worker.bench.report import print_report
from worker.bench.scenarios import SCENARIOS, run_scenarios, scenario_names
from worker.bench.throughput import run_bench

__all__ = ["SCENARIOS", "print_report", "run_bench", "run_scenarios", "scenario_names"]
