"""Where Ray tasks start to pay: speedup over a sequential loop vs the duration of one task, Ray and Pool.

    python ray_core/benchmarks/crossover.py                 # 1 ms .. 1 s tasks, about 2 minutes on 2 cores
    python ray_core/benchmarks/crossover.py --smoke-test    # tiny sizes, to check that it runs

For each task duration the same CPU-bound work (a pure-Python loop, calibrated on this machine to take that
long) runs as many tasks as fill about --work-seconds of sequential time, four ways:
- sequential: a plain loop, the reference;
- Pool: `multiprocessing.Pool(processes=cpus).map(..., chunksize=1)` and with the chunksize Pool picks itself;
- Ray, `ray.get([task.remote(...) ...])`: submit everything, wait for everything;
- Ray, a `ray.wait(num_returns=1)` loop: results handled one by one as they finish (what bootstrap_auc.py
  does to drive its progress bar), to see what that loop costs on tiny tasks, apart from Ray's task cost.
Speedup = sequential time / parallel time; the physical limit is the number of cores. Ray's start-up is not
timed (it is paid once per program, not per task). Writes reports/crossover.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tools/ (run as `python ray_core/benchmarks/crossover.py`)
from tools.tour import machine_description  # noqa: E402
DURATIONS_MS = [1, 3, 10, 30, 100, 300, 1000]


def spin(iterations: int) -> int:
    """CPU-bound work that holds the GIL, as a pure-Python model step would: no sleeping, no I/O."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


@ray.remote
def spin_task(iterations: int) -> int:
    return spin(iterations)


def calibrate(seconds: float) -> int:
    """Loop iterations that take `seconds` on one core of this machine (best of 3)."""
    n = 200_000
    best = min(_timed(spin, n) for _ in range(3))
    return max(1, int(n * seconds / best))


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run_sequential(n_tasks: int, iterations: int) -> float:
    return _timed(lambda: [spin(iterations) for _ in range(n_tasks)])


def run_pool(pool, n_tasks: int, iterations: int, chunksize: int | None) -> float:
    return _timed(lambda: pool.map(spin, [iterations] * n_tasks, chunksize=chunksize))


def run_ray_get(n_tasks: int, iterations: int) -> float:
    return _timed(lambda: ray.get([spin_task.remote(iterations) for _ in range(n_tasks)]))


def run_ray_wait_one(n_tasks: int, iterations: int) -> float:
    def loop() -> None:
        pending = [spin_task.remote(iterations) for _ in range(n_tasks)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done[0])

    return _timed(loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="two short durations, little work")
    parser.add_argument("--work-seconds", type=float, default=4.0, help="sequential work per duration")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for crossover.*")
    args = parser.parse_args()
    durations = [1, 30] if args.smoke_test else DURATIONS_MS
    work = 0.3 if args.smoke_test else args.work_seconds
    cpus = os.cpu_count() or 1

    # the Pool first: processes forked after ray.init() would inherit Ray's signal handlers and print a stack
    # trace each when the Pool terminates them
    pool = mp.Pool(processes=cpus)
    pool.map(spin, [1] * cpus)
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)  # Ray's start-up: not timed
    ray.get([spin_task.remote(1) for _ in range(cpus * 2)])  # start the worker processes before timing
    rows = []
    with pool:
        for ms in durations:
            iterations = calibrate(ms / 1000)
            n_tasks = max(cpus * 4, round(work * 1000 / ms))
            seq = run_sequential(n_tasks, iterations)
            times = {
                "pool_chunksize_1": run_pool(pool, n_tasks, iterations, 1),
                "pool_auto_chunks": run_pool(pool, n_tasks, iterations, None),
                "ray_get_all": run_ray_get(n_tasks, iterations),
                "ray_wait_one": run_ray_wait_one(n_tasks, iterations),
            }
            row = {"task_ms": ms, "tasks": n_tasks, "sequential_s": round(seq, 3),
                   **{f"{k}_s": round(v, 3) for k, v in times.items()},
                   **{f"{k}_speedup": round(seq / v, 3) for k, v in times.items()}}
            rows.append(row)
            print(f"{ms:>5} ms x {n_tasks:>5} tasks: sequential {seq:6.2f} s | " + " | ".join(
                f"{k} {seq / v:4.2f}x" for k, v in times.items()), flush=True)
    ray.shutdown()

    args.reports.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine,
              "python": platform.python_version(), "ray": ray.__version__, "rows": rows}
    (args.reports / "crossover.json").write_text(json.dumps(report, indent=2) + "\n")
    keys = ["pool_chunksize_1", "pool_auto_chunks", "ray_get_all", "ray_wait_one"]
    table = ["| task | tasks | sequential s | " + " | ".join(keys) + " |", "|---:|---:|---:|" + "---:|" * len(keys)]
    table += [f"| {r['task_ms']} ms | {r['tasks']} | {r['sequential_s']:.2f} | "
              + " | ".join(f"{r[k + '_speedup']:.2f}x" for k in keys) + " |" for r in rows]
    (args.reports / "crossover.md").write_text(f"# Crossover on {machine}\n\n" + "\n".join(table) + "\n")
    write_chart(rows, keys, args.reports / "crossover.png", machine, cpus)
    print(f"Reports: {args.reports / 'crossover'}.json, .md, .png")


def write_chart(rows, keys, path: Path, machine: str, cpus: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        ax.plot([r["task_ms"] for r in rows], [r[key + "_speedup"] for r in rows], marker="o", label=key)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.axhline(cpus, color="grey", linewidth=1, linestyle="--", label=f"{cpus} cores (limit)")
    ax.set_xscale("log")
    ax.set_xlabel("duration of one task (ms)")
    ax.set_ylabel("speedup over a sequential loop")
    ax.set_title(f"Where parallel tasks start to pay ({machine})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
