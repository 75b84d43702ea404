"""Benchmark: how long Ray Train takes to recover from a killed training worker, and what the failure costs.

Runs ray_train/ray_version/train_classifier.py twice at the same size, once uninterrupted and once with one
training worker SIGKILLed from outside (tools/kill_process.py, as an out-of-memory kill would) once epoch 2
has been printed, and reports:
  - recovery time: from the kill to the script's "Resumed from the latest checkpoint" line,
  - the epoch the run resumed from, and the extra wall time of trainer.fit caused by the failure,
  - the final held-out accuracy of both runs (they should match: the checkpoint holds model and optimizer).
The taught script holds no fault code: the kill and the clock are here.
Writes reports/ray_train_recovery_time.json and .md and prints the table.

    python ray_train/benchmarks/recovery_time.py              # benchmark size (a few minutes on 2 cores)
    python ray_train/benchmarks/recovery_time.py --smoke-test # small, to check that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tools import cluster as local_cluster, tour  # noqa: E402
SCRIPT = "ray_train/ray_version/train_classifier.py"
BENCH_ARGS = ["--rows", "200000", "--epochs", "4", "--hidden", "256"]
SMOKE_ARGS = ["--rows", "16000", "--hidden", "64", "--epochs", "16"]  # long enough for the kill to land mid-run


def run_training(args: list[str], output: Path, kill: bool, env: dict[str, str]) -> tuple[dict, dict]:
    """One run; with kill, SIGKILL a training worker once a checkpoint exists. Returns (result, timings)."""
    proc = subprocess.Popen([sys.executable, SCRIPT, *args, "--output", str(output)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # workers log to stderr
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.time(), line) for line in proc.stdout))
    reader.start()
    timings = {}
    if kill:  # after epoch 2's line: its checkpoint is reported, and epoch 1's surely taken in by the controller
        while not any(" epoch 2/" in line for _, line in lines) and proc.poll() is None:
            time.sleep(0.1)
        killer = subprocess.run([sys.executable, "-m", "tools.kill_process", "train-worker", "--wait", "60",
                                 "--job-id", "newest"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=120)
        if killer.returncode != 0:
            proc.kill()
            sys.exit(f"error: could not kill a training worker: {killer.stderr.strip()[-500:]}")
        timings["killed_at"] = json.loads(killer.stdout.strip().splitlines()[-1])["at"]
    proc.wait(timeout=1500)
    reader.join()
    (output / "stdout.txt").write_text("".join(line for _, line in lines))  # what a person would have seen
    if proc.returncode != 0:
        sys.exit(f"error: {SCRIPT} {' '.join(args)} failed (exit {proc.returncode})")
    for at, line in lines:
        if "Resumed from the latest checkpoint" in line:  # a worker's line: "(RayTrainWorker pid=...) Resumed ..."
            timings["resumed_at"] = at
            timings["resumed_from_epoch"] = int(re.search(r"after epoch (\d+)", line).group(1))
    return json.loads((output / "result.json").read_text()), timings


def shown(value: float | None, spec: str, unit: str = "") -> str:
    return "not run (--smoke-test)" if value is None else format(value, spec) + unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="small size, to check that the benchmark runs")
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "ray_train" / "recovery_time",
                        help="folder for the two training runs")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for the report files")
    args = parser.parse_args()
    size = SMOKE_ARGS if args.smoke_test else BENCH_ARGS
    # --smoke-test checks that the measurement works: the killed run only (the uninterrupted one is the same run
    # without the kill)
    # A Ray of its own, one node with this machine's CPUs (what the script's own ray.init() would start), at an
    # address the kill tool is given: another Ray on this machine (a test cluster, make cluster-up) stays apart
    cluster = local_cluster.start(head_cpus=os.cpu_count() or 2, worker_cpus=None)
    try:
        env = cluster.env()
        clean = None if args.smoke_test else run_training(size, args.output / "uninterrupted", False, env)[0]
        failed, timings = run_training(size, args.output / "killed_worker", True, env)
    finally:
        cluster.stop()
    if "resumed_at" not in timings:
        sys.exit("error: the run never resumed from a checkpoint (did it end before the kill?); nothing to report")
    d_failed = failed["details"]
    d_clean = clean["details"] if clean else {"fit_seconds": None, "val_accuracy": None}
    report = {
        **tour.stamp(),
        "args": size,
        "workers": d_failed["workers"],
        "recovery_seconds": round(timings["resumed_at"] - timings["killed_at"], 2),
        "resumed_from_epoch": timings["resumed_from_epoch"],
        "epochs": d_failed["epochs"],
        "fit_seconds_uninterrupted": d_clean["fit_seconds"] and round(d_clean["fit_seconds"], 2),
        "fit_seconds_with_failure": round(d_failed["fit_seconds"], 2),
        "val_accuracy_uninterrupted": d_clean["val_accuracy"],
        "val_accuracy_with_failure": d_failed["val_accuracy"],
        "cpu_count": failed["cpu_count"],
        "output_with_failure": tour.tail((args.output / "killed_worker" / "stdout.txt").read_text(), 6000),
    }
    md = "\n".join([
        f"Ray Train recovery from a killed worker ({report['workers']} workers, `{' '.join(size)}`, "
        f"{report['cpu_count']} CPUs)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| kill -> training resumed | {report['recovery_seconds']:.1f} s |",
        f"| resumed from the checkpoint of epoch | {report['resumed_from_epoch']} of {report['epochs']} |",
        f"| trainer.fit, uninterrupted | {shown(report['fit_seconds_uninterrupted'], '.1f', ' s')} |",
        f"| trainer.fit, with the failure | {report['fit_seconds_with_failure']:.1f} s |",
        f"| held-out accuracy, uninterrupted / with failure | {shown(report['val_accuracy_uninterrupted'], '.4f')} / "
        f"{report['val_accuracy_with_failure']:.4f} |",
        "",
    ])
    args.reports.mkdir(parents=True, exist_ok=True)
    stem = args.reports / f"ray_train_recovery_time{'_smoke' if args.smoke_test else ''}"
    report["table"] = md.splitlines()
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(md)
    print(md)
    print(f"Written: {stem}.json and .md")


if __name__ == "__main__":
    main()
