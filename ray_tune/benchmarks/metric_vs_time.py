"""Benchmark: best validation accuracy so far against wall time: two searches without Ray, and Tune.

Runs ray_tune/tune_mlp.py three ways with the same budget and seed on this machine: the baseline with Optuna +
a successive-halving pruner (sequential: the strongest search without Ray), the baseline with plain random
search (sequential, every trial to the end), and Tune (the same Optuna sampler with ASHA, one trial per CPU, its
own local Ray). It reports how long each takes to reach the Optuna baseline's best accuracy (within
--tolerance), each search's wall time, and the epochs each trained. Writes reports/ray_tune_metric_vs_time.{json,md,png}.
Both sides write every trial's per-epoch records into result.json; each record carries `timestamp` (when it was
reported; whole seconds on the Tune side, which Tune adds to every result) and `time_total_s` (seconds since its
trial started), so a search starts at the earliest `timestamp - time_total_s`.

    python ray_tune/benchmarks/metric_vs_time.py            # benchmark size (what make bench runs)
    python ray_tune/benchmarks/metric_vs_time.py --smoke-test    # a small run that checks the set-up
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tools/ (run as `python ray_tune/benchmarks/metric_vs_time.py`)
from tools.tour import machine_description  # noqa: E402
RUNS = {"optuna": "ray_tune/baseline/tune_mlp.py", "random": "ray_tune/benchmarks/random_search.py",
        "tune": "ray_tune/ray_version/tune_mlp.py"}
LABELS = {"optuna": "Optuna + pruner, sequential", "random": "random search, sequential",
          "tune": "Tune: Optuna + ASHA, parallel"}


def run_side(script: str, args: list[str], output: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    command = [sys.executable, script, *args, "--output", str(output)]
    print("$", " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"error: {script} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return {**json.loads((output / "result.json").read_text()), "process_seconds": time.perf_counter() - started}


def epoch_trace(result: dict) -> list[tuple[float, float]]:
    """(seconds since the search started, val_accuracy) of every epoch of every trial."""
    rows = [row for trial in result["details"]["trials"] for row in trial["history"]]
    start = min(row["timestamp"] - row["time_total_s"] for row in rows)
    return [(round(row["timestamp"] - start, 3), row["val_accuracy"]) for row in rows]


def best_so_far(trace: list[list[float]]) -> list[tuple[float, float]]:
    curve, best = [], float("-inf")
    for seconds, accuracy in sorted(trace):
        best = max(best, accuracy)
        curve.append((seconds, best))
    return curve


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((seconds for seconds, best in curve if best >= target), None)


def sentence(report: dict) -> str:
    """What the table says, in ratios of the one run (tools/docs.py prints the same from a committed report)."""
    wall, whole = report["wall_seconds"], report["process_seconds"]
    return (f"Tune's search took {wall['tune'] / wall['optuna']:.2f}x the Optuna baseline's wall time "
            f"({wall['tune']:.1f} s against {wall['optuna']:.1f} s), the search alone; the whole processes "
            f"(imports, data, Ray's start-up) took {' / '.join(f'{whole[n]:.1f}' for n in RUNS)} s. Early stopping "
            "alone (no Ray) is the gap between the random and the Optuna columns.")


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "not reached" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=16, help="trials on each side")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial at most")
    parser.add_argument("--train-rows", type=int, default=20_000, help="training rows")
    parser.add_argument("--val-rows", type=int, default=5_000, help="validation rows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of both searches")
    parser.add_argument("--tolerance", type=float, default=0.01, help="'reached' = within this of the baseline's best")
    parser.add_argument("--smoke-test", action="store_true", help="small sizes, to check the set-up in a minute")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for the report files")
    args = parser.parse_args()
    if args.smoke_test:
        args.num_samples, args.epochs, args.train_rows, args.val_rows = 6, 6, 3_000, 1_000
    script_args = ["--num-samples", str(args.num_samples), "--epochs", str(args.epochs), "--train-rows",
                   str(args.train_rows), "--val-rows", str(args.val_rows), "--seed", str(args.seed)]
    outputs = ROOT / "outputs" / "ray_tune" / "benchmarks"
    results = {name: run_side(script, script_args, outputs / name) for name, script in RUNS.items()}

    base = results["optuna"]
    curves = {name: best_so_far(epoch_trace(results[name])) for name in RUNS}
    target = base["answer"]["best_val_accuracy"] - args.tolerance
    reached = {name: time_to_reach(curves[name], target) for name in RUNS}
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "python": platform.python_version(),
        "sizes": {"num_samples": args.num_samples, "epochs": args.epochs, "train_rows": args.train_rows,
                  "val_rows": args.val_rows, "seed": args.seed},
        "best_val_accuracy": {name: results[name]["answer"]["best_val_accuracy"] for name in RUNS},
        "target": target, "tolerance": args.tolerance,
        "wall_seconds": {name: results[name]["seconds"] for name in RUNS},
        "process_seconds": {name: round(results[name]["process_seconds"], 2) for name in RUNS},
        "seconds_to_target": reached,
        "trials_stopped_early": {name: results[name]["details"]["trials_stopped_early"] for name in RUNS},
        "epochs_run": {name: results[name]["details"]["epochs_run"] for name in RUNS},
    }
    row = lambda title, cells: f"| {title} | " + " | ".join(cells) + " |"  # noqa: E731
    lines = [
        f"# ray_tune: best validation accuracy against wall time ({report['machine']})", "",
        f"{args.num_samples} trials x {args.epochs} epochs, {args.train_rows:,} training rows, seed {args.seed}.", "",
        row("", [LABELS[name] for name in RUNS]), "|---|" + "---|" * len(RUNS),
        row("best val accuracy", [f"{results[n]['answer']['best_val_accuracy']:.4f}" for n in RUNS]),
        row("wall time of the search, s", [f"{results[n]['seconds']:.1f}" for n in RUNS]),
        row(f"time to reach {target:.4f} (Optuna baseline's best - {args.tolerance}), s",
            [fmt(reached[n]) for n in RUNS]),
        row("epochs trained", [str(report["epochs_run"][n]) for n in RUNS]),
        row("trials stopped early", [f"{report['trials_stopped_early'][n]} of {args.num_samples}" for n in RUNS]), "",
        sentence(report),
    ]
    args.reports.mkdir(parents=True, exist_ok=True)
    stem = args.reports / "ray_tune_metric_vs_time"
    stem.with_suffix(".json").write_text(json.dumps({**report, "table": lines[4:], "curves": curves}, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    write_plot(curves, target, stem.with_suffix(".png"), report["machine"])
    print("\n".join(lines))
    print(f"Reports: {stem}.json, .md, .png")


def write_plot(curves: dict, target: float, path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, label in LABELS.items():
        xs, ys = zip(*curves[name])
        ax.step(xs, ys, where="post", label=label)
    ax.axhline(target, color="grey", linestyle=":", label="Optuna baseline's best - tolerance")
    ax.set_xlabel("wall time of the search, s (Ray start-up excluded)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"ray_tune/tune_mlp on {machine}", fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
