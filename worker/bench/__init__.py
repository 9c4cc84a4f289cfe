"""`teams-notify bench`: the throughput run (`worker.bench.throughput.run_bench`), the scenarios
(`worker.bench.scenarios.run_scenarios`) and their table (`worker.bench.report`).

Nothing is imported here, so that a child process measuring producers alone (`worker.bench.producer`)
loads no more than a backend app would.
"""
