"""Benchmark: best validation accuracy so far against wall time, random search vs Tune (Optuna + ASHA).

Runs both sides of ray_tune/tune_mlp.py with the same budget and seed on this machine (the Ray side starts
its own local Ray, one trial per CPU), then reports how long Tune takes to reach the baseline's best accuracy
(within --tolerance) as a share of the baseline's wall time, the trials ASHA stopped early, and the epochs
(compute) saved. Writes reports/ray_tune_metric_vs_time.{json,md,png}.

    python ray_tune/benchmarks/metric_vs_time.py            # benchmark size (what make bench runs)
    python ray_tune/benchmarks/metric_vs_time.py --quick    # a small run that checks the set-up
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "ray_tune/{side}/tune_mlp.py"
SIDES = ("baseline", "ray_version")
TARGET_SHARE = 0.5  # the goal: Tune reaches the baseline's best in at most half the baseline's wall time


def run_side(side: str, args: list[str], output: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    command = [sys.executable, SCRIPT.format(side=side), *args, "--output", str(output)]
    print("$", " ".join(command[1:]), flush=True)
    proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"error: {side} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads((output / "result.json").read_text())


def best_so_far(trace: list[list[float]]) -> list[tuple[float, float]]:
    curve, best = [], float("-inf")
    for seconds, accuracy in sorted(trace):
        best = max(best, accuracy)
        curve.append((seconds, best))
    return curve


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((seconds for seconds, best in curve if best >= target), None)


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
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the set-up in a minute")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for the report files")
    args = parser.parse_args()
    if args.quick:
        args.num_samples, args.epochs, args.train_rows, args.val_rows = 6, 6, 3_000, 1_000
    script_args = ["--num-samples", str(args.num_samples), "--epochs", str(args.epochs), "--train-rows",
                   str(args.train_rows), "--val-rows", str(args.val_rows), "--seed", str(args.seed)]
    outputs = ROOT / "outputs" / "ray_tune" / "benchmarks"
    results = {side: run_side(side, script_args, outputs / side) for side in SIDES}

    base, tune = results["baseline"], results["ray_version"]
    curves = {side: best_so_far(results[side]["details"]["trace"]) for side in SIDES}
    target = base["answer"]["best_val_accuracy"] - args.tolerance
    reached = {side: time_to_reach(curves[side], target) for side in SIDES}
    share = reached["ray_version"] / base["seconds"] if reached["ray_version"] is not None else None
    report = {
        "machine": f"{os.cpu_count()} CPU cores (os.cpu_count), Ray with one trial per CPU",
        "sizes": {"num_samples": args.num_samples, "epochs": args.epochs, "train_rows": args.train_rows,
                  "val_rows": args.val_rows, "seed": args.seed},
        "best_val_accuracy": {side: results[side]["answer"]["best_val_accuracy"] for side in SIDES},
        "target": target, "tolerance": args.tolerance,
        "wall_seconds": {side: results[side]["seconds"] for side in SIDES},
        "ray_startup_seconds": tune["details"]["startup_seconds"],
        "seconds_to_target": reached,
        "tune_share_of_baseline_time": share,
        "goal_met": share is not None and share <= TARGET_SHARE,
        "trials_stopped_early": tune["details"]["trials_stopped_early"],
        "epochs_run": {side: results[side]["details"]["epochs_run"] for side in SIDES},
        "compute_saved": 1 - tune["details"]["epochs_run"] / base["details"]["epochs_run"],
    }
    lines = [
        f"# ray_tune: best validation accuracy against wall time ({report['machine']})", "",
        f"{args.num_samples} trials x {args.epochs} epochs, {args.train_rows:,} training rows, seed {args.seed}.", "",
        "| | random search (baseline) | Tune (Optuna + ASHA) |", "|---|---|---|",
        f"| best val accuracy | {base['answer']['best_val_accuracy']:.4f} | {tune['answer']['best_val_accuracy']:.4f} |",
        (f"| wall time of the search, s | {base['seconds']:.1f} | {tune['seconds']:.1f} "
         f"(+ {report['ray_startup_seconds']:.1f} Ray start-up) |"),
        (f"| time to reach {target:.4f} (baseline best - {args.tolerance}), s | {fmt(reached['baseline'])} | "
         f"{fmt(reached['ray_version'])} |"),
        f"| epochs trained | {report['epochs_run']['baseline']} | {report['epochs_run']['ray_version']} |",
        f"| trials stopped early | 0 | {report['trials_stopped_early']} of {args.num_samples} |", "",
        (f"Tune reached the target in {fmt(share, '.0%') if share is not None else 'never'} of the baseline's wall "
         f"time (goal: <= {TARGET_SHARE:.0%}; {'met' if report['goal_met'] else 'NOT met'}). "
         f"Compute saved by early stopping: {report['compute_saved']:.0%} of the epochs."),
    ]
    args.reports.mkdir(parents=True, exist_ok=True)
    stem = args.reports / "ray_tune_metric_vs_time"
    stem.with_suffix(".json").write_text(json.dumps({**report, "curves": curves}, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    write_plot(curves, target, stem.with_suffix(".png"), report["machine"])
    print("\n".join(lines))
    print(f"Reports: {stem}.json, .md, .png")


def write_plot(curves: dict, target: float, path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for side, label in (("baseline", "random search, sequential"), ("ray_version", "Tune: Optuna + ASHA")):
        xs, ys = zip(*curves[side])
        ax.step(xs, ys, where="post", label=label)
    ax.axhline(target, color="grey", linestyle=":", label="baseline best - tolerance")
    ax.set_xlabel("wall time of the search, s (Ray start-up excluded)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"ray_tune/tune_mlp on {machine}", fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
