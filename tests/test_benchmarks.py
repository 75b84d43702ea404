"""Everything that ships runs: every benchmark script (`make bench` runs them), the data generator and the timing
tool, each at its smallest size, writing into a temporary folder: exit 0, and a report that parses and says what
it measured. The figures themselves come from full-size runs on a quiet machine (the READMEs say which).

The runs of the benchmark scripts and the timing tool are marked `bench`: `make test-bench` runs them, CI does
not. Each runs a pair's scripts again through a harness, and with them `.ci/run` took over 30 minutes on 2 Intel
Xeon cores; the pairs themselves are tested in CI."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from helpers import ROOT, base_env
from tools import netns

# script or module, arguments, the report it writes (in {reports}), keys that report must hold.
# ray_train/benchmarks/recovery_time.py runs in tests/test_ray_train.py (marked bench too), which also checks its
# training run's answer.
# ray_core/benchmarks/slow_link.py needs root (two network hosts, tools/netns.py).
BENCHMARKS = {
    "slow_link": ("ray_core/benchmarks/slow_link.py", ["--smoke-test", "--reports", "{reports}"],
                  "ray_core_slow_link_smoke.json", ["table"]),
    "crossover": ("ray_core/benchmarks/crossover.py", ["--smoke-test", "--reports", "{reports}"],
                  "crossover.json", ["rows"]),
    "memory_curve": ("ray_data/benchmarks/memory_curve.py", ["--smoke-test", "--reports", "{reports}"],
                     "ray_data_memory_curve.json", ["curve"]),
    "fit_overhead": ("ray_train/benchmarks/fit_overhead.py", ["--smoke-test", "--reports", "{reports}"],
                     "ray_train_fit_overhead.json", ["rows"]),
    "metric_vs_time": ("ray_tune/benchmarks/metric_vs_time.py", ["--smoke-test", "--reports", "{reports}"],
                       "ray_tune_metric_vs_time.json", ["seconds_to_target", "best_val_accuracy"]),
    "c32_servers": ("ray_serve/benchmarks/c32_servers.py", ["--smoke-test", "--reports", "{reports}"],
                    "ray_serve_c32_smoke.json", ["rows", "table"]),
    "load_ramp": ("ray_serve/benchmarks/load_ramp.py", ["--smoke-test", "--reports", "{reports}"],
                  "ray_serve_load_ramp_smoke.json", ["stages", "timeline"]),
    # every module's "In the workshop" commands as written (tests/test_readme_commands.py counts on it)
    "time_workshop": ("-m tools.time_workshop", ["--reports", "{reports}"], "workshop_times.json", ["steps"]),
}


@pytest.mark.timeout(1800)
@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_at_its_smallest_size(name, tmp_path):
    if name == "slow_link" and netns.available():
        pytest.skip(f"slow_link.py needs two network hosts: {netns.available()}")
    script, args, report_name, keys = BENCHMARKS[name]
    reports = tmp_path / "reports"
    command = [sys.executable, *script.split(), *(a.format(reports=reports) for a in args)]
    proc = subprocess.run(command, cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((reports / report_name).read_text())
    assert all(report.get(key) not in (None, [], {}) for key in keys), {k: report.get(k) for k in keys}


@pytest.mark.timeout(120)
def test_generate_reviews_writes_the_pipelines_input(tmp_path):
    out = tmp_path / "reviews"
    proc = subprocess.run([sys.executable, "ray_data/generate_reviews.py", "--rows", "300", "--rows-per-shard", "100",
                           "--output", str(out)], cwd=ROOT, env=base_env(), capture_output=True, text=True,
                          timeout=100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pq.read_table(out).num_rows == 300 and len(list(out.glob("*.parquet"))) == 3
