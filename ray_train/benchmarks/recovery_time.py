"""Benchmark: how long Ray Train takes to recover from a killed training worker, and what the failure costs.

Runs ray_train/ray_version/train_classifier.py twice at the same size, once uninterrupted and once with
--inject-failure (a worker process is killed halfway through the run), and reports:
  - recovery time: from the kill to training resumed from the latest checkpoint (measured inside the workers),
  - the epoch the run resumed from, and the extra wall time of trainer.fit caused by the failure,
  - the final held-out accuracy of both runs (they should match: the checkpoint holds model and optimizer).
Writes reports/ray_train_recovery_time.json and .md and prints the table.

    python ray_train/benchmarks/recovery_time.py              # benchmark size (a few minutes on 2 cores)
    python ray_train/benchmarks/recovery_time.py --smoke-test # tiny, to check that it runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "ray_train/ray_version/train_classifier.py"
BENCH_ARGS = ["--rows", "200000", "--epochs", "4", "--hidden", "256"]


def run_training(args: list[str], output: Path) -> dict:
    proc = subprocess.run([sys.executable, SCRIPT, *args, "--output", str(output)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500)
    if proc.returncode != 0:
        sys.exit(f"error: {SCRIPT} {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((output / "result.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="tiny size, to check that the benchmark runs")
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "ray_train" / "recovery_time",
                        help="folder for the two training runs")
    args = parser.parse_args()
    size = ["--smoke-test"] if args.smoke_test else BENCH_ARGS
    clean = run_training(size, args.output / "uninterrupted")
    failed = run_training([*size, "--inject-failure"], args.output / "injected_failure")
    d_clean, d_failed = clean["details"], failed["details"]
    if not d_failed.get("injected_failure") or "recovery_seconds" not in d_failed:
        sys.exit("error: the injected failure did not happen; nothing to report")
    report = {
        "args": size,
        "workers": d_failed["workers"],
        "recovery_seconds": round(d_failed["recovery_seconds"], 2),
        "resumed_from_epoch": d_failed["resumed_from_epoch"],
        "epochs": d_failed["epochs"],
        "fit_seconds_uninterrupted": round(d_clean["fit_seconds"], 2),
        "fit_seconds_with_failure": round(d_failed["fit_seconds"], 2),
        "val_accuracy_uninterrupted": d_clean["val_accuracy"],
        "val_accuracy_with_failure": d_failed["val_accuracy"],
        "cpu_count": clean["cpu_count"],
        "versions": clean["versions"],
    }
    md = "\n".join([
        f"Ray Train recovery from a killed worker ({report['workers']} workers, `{' '.join(size)}`, "
        f"{report['cpu_count']} CPUs)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| kill -> training resumed | {report['recovery_seconds']:.1f} s |",
        f"| resumed from the checkpoint of epoch | {report['resumed_from_epoch']} of {report['epochs']} |",
        f"| trainer.fit, uninterrupted | {report['fit_seconds_uninterrupted']:.1f} s |",
        f"| trainer.fit, with the failure | {report['fit_seconds_with_failure']:.1f} s |",
        f"| held-out accuracy, uninterrupted / with failure | {report['val_accuracy_uninterrupted']:.4f} / "
        f"{report['val_accuracy_with_failure']:.4f} |",
        "",
    ])
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    suffix = "_smoke" if args.smoke_test else ""
    (reports / f"ray_train_recovery_time{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (reports / f"ray_train_recovery_time{suffix}.md").write_text(md)
    print(md)
    print(f"Written: reports/ray_train_recovery_time{suffix}.json and .md")


if __name__ == "__main__":
    main()
