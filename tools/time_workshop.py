"""Time the commands of every module's "In the workshop" section, as a learner runs them (wall clock, from
the repository root, a fresh local Ray each time). Prints a table and writes reports/workshop_times.json.

    python -m tools.time_workshop
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from tools.tour import machine_description

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "ray_core": ["ray_core/{side}/bootstrap_auc.py --smoke-test", "ray_core/{side}/parameter_server.py --smoke-test"],
    "ray_data": ["ray_data/{side}/preprocess_reviews.py --smoke-test"],
    "ray_train": ["ray_train/{side}/train_classifier.py --smoke-test"],
    "ray_tune": ["ray_tune/{side}/tune_mlp.py --smoke-test"],
    "ray_serve": ["ray_serve/{side}/text_classifier_server.py --smoke-test"],
    "vllm_examples": ["vllm_examples/{side}/batch_generate.py --smoke-test"],
}


def main() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    times = {}
    for module, commands in COMMANDS.items():
        for command in commands:
            for side in ("baseline", "ray_version"):
                args = command.format(side=side).split()
                started = time.perf_counter()
                proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - started
                if proc.returncode != 0:
                    sys.exit(f"error: {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr[-500:]}")
                times[" ".join(args)] = round(wall, 1)
                print(f"{wall:7.1f} s  python {' '.join(args)}", flush=True)
    out = ROOT / "reports" / "workshop_times.json"
    out.parent.mkdir(exist_ok=True)
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine_description(),
              "python": platform.python_version(), "seconds": times}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
