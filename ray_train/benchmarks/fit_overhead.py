"""Benchmark: where the fixed cost of `TorchTrainer.fit()` goes, around a loop that does almost nothing.

    python ray_train/benchmarks/fit_overhead.py               # 1 and 2 workers, default and faster polling
    python ray_train/benchmarks/fit_overhead.py --smoke-test  # one configuration, to check that it runs

Each run starts `trainer.fit()` on a loop that only reports once, and splits the wall time of fit() into:
- start: fit() called -> the loop's first line runs in rank 0 (controller actor, placement group, worker
  processes, `import torch`, the torch.distributed process group),
- loop: the loop itself (one `ray.train.report`, about nothing),
- finish: the loop returned -> fit() returns (the controller notices that the workers are done: it polls them
  every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s by default; then it tears the worker group down).
Ray's own start (`ray.init`) is measured once, outside. Writes reports/ray_train_fit_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tools import tour  # noqa: E402

CHILD = r"""
import json, os, sys, tempfile, time
import ray, ray.train, ray.train.torch

def loop(config):
    started = time.time()
    ray.train.report({"step": 1})  # without a checkpoint, result.metrics stays None in 2.60: times go to a file
    if ray.train.get_context().get_world_rank() == 0:
        with open(config["times"], "w") as handle:
            json.dump({"loop_started": started, "loop_ended": time.time()}, handle)

workers, storage = int(sys.argv[1]), sys.argv[2]
t0 = time.time()
ray.init(logging_level="ERROR", log_to_driver=False)
t1 = time.time()
times = os.path.join(storage, "times.json")
os.makedirs(storage, exist_ok=True)
trainer = ray.train.torch.TorchTrainer(
    loop, train_loop_config={"times": times}, scaling_config=ray.train.ScalingConfig(num_workers=workers),
    run_config=ray.train.RunConfig(storage_path=storage, name="fit_overhead"))
t2 = time.time()
result = trainer.fit()
t3 = time.time()
m = json.load(open(times))
print(json.dumps({"ray_init": t1 - t0, "fit": t3 - t2, "start": m["loop_started"] - t2,
                  "loop": m["loop_ended"] - m["loop_started"], "finish": t3 - m["loop_ended"]}))
"""


def measure(workers: int, poll_s: float | None, storage: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if poll_s is not None:
        env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(poll_s)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(workers), str(storage)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"error: fit_overhead child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="one configuration, once")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (the best is reported)")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for the report files")
    args = parser.parse_args()
    configs = [(1, None)] if args.smoke_test else [(1, None), (2, None), (1, 0.25), (2, 0.25)]
    repeats = 1 if args.smoke_test else args.repeats
    storage = (ROOT / "outputs" / "ray_train" / "fit_overhead").resolve()
    rows = []
    for workers, poll in configs:
        runs = [measure(workers, poll, storage) for _ in range(repeats)]
        best = min(runs, key=lambda r: r["fit"])
        rows.append({"workers": workers, "health_check_interval_s": poll if poll is not None else 2.0, **best})
        print(f"{workers} worker(s), poll {rows[-1]['health_check_interval_s']} s: fit {best['fit']:.1f} s = "
              f"start {best['start']:.1f} + loop {best['loop']:.2f} + finish {best['finish']:.1f} "
              f"(ray.init {best['ray_init']:.1f} s, outside)", flush=True)
    report = {**tour.stamp(), "rows": rows}
    machine = report["machine"]
    table = ["| workers | health-check poll, s | fit, s | start, s | loop, s | finish, s | ray.init, s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['workers']} | {r['health_check_interval_s']} | {r['fit']:.1f} | {r['start']:.1f} | "
              f"{r['loop']:.2f} | {r['finish']:.1f} | {r['ray_init']:.1f} |" for r in rows]
    report["table"] = table
    args.reports.mkdir(parents=True, exist_ok=True)
    stem = args.reports / "ray_train_fit_overhead"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join([f"# ray_train: the fixed cost of trainer.fit() ({machine})", "",
                                                  *table]) + "\n")
    print(f"Reports: {stem}.json, .md")


if __name__ == "__main__":
    main()
