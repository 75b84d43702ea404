"""Time every command that a module's "In the workshop" section asks for, as a learner runs them: from the
repository root, in the README's order, the fault lessons included (a cluster started and stopped, a worker
killed from a second terminal, a search stopped with Ctrl-C and restored). Prints each step and writes
reports/workshop_times.json, which fills the agenda's time column (tools/docs.py).

    python -m tools.time_workshop                      # every module, a few minutes on 2 cores
    python -m tools.time_workshop --module ray_core
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tools.tour import MODULES, stamp, tail

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Step:
    """One command of the first terminal. `second` runs in a second terminal once the first has printed
    `after` (a regex; at once when empty); `ctrl_c` sends Ctrl-C to the first once it has printed that regex."""

    command: str
    after: str = ""
    second: str = ""
    ctrl_c: str = ""


CLUSTER_UP, CLUSTER_DOWN = Step("make cluster-up"), Step("make cluster-down")
TUNE_LONG = "python ray_tune/ray_version/tune_mlp.py --num-samples 4 --epochs 8 --train-rows 60000"


def smoke(module: str, *pairs: str) -> list[Step]:
    return [Step(f"python {module}/{side}/{pair}.py --smoke-test") for pair in pairs
            for side in ("baseline", "ray_version")]


# Each module README's "In the workshop" commands, in its order.
WORKSHOP = {
    "ray_core": [
        *smoke("ray_core", "bootstrap_auc", "parameter_server"),
        CLUSTER_UP,
        Step("python ray_core/ray_version/bootstrap_auc.py --rows 20000 --replicates 4 --sample-size 12000000",
             second="python -m tools.kill_process task bootstrap_task"),
        Step("python ray_core/ray_version/parameter_server.py --smoke-test --steps 300",
             second="python -m tools.kill_process actor DataWorker"),
        CLUSTER_DOWN,
    ],
    "ray_data": smoke("ray_data", "preprocess_reviews"),
    "ray_train": [
        *smoke("ray_train", "train_classifier"),
        CLUSTER_UP,
        Step("python ray_train/ray_version/train_classifier.py --rows 16000 --hidden 64 --epochs 16",
             after=r"epoch 3/", second="python -m tools.kill_process train-worker"),
        CLUSTER_DOWN,
    ],
    "ray_tune": [
        *smoke("ray_tune", "tune_mlp"),
        Step(TUNE_LONG, ctrl_c=r"Trial \S+ finished"),  # once a trial has finished
        Step(TUNE_LONG + " --restore"),
    ],
    "ray_serve": smoke("ray_serve", "text_classifier_server"),
    "vllm_examples": smoke("vllm_examples", "batch_generate"),
}


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    return [sys.executable, *words[1:]] if words[0] == "python" else words


def cluster_env(env: dict[str, str]) -> dict[str, str]:
    """What `eval "$(python -m tools.cluster env)"` exports, added to env."""
    out = subprocess.run([sys.executable, "-m", "tools.cluster", "env"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    exports = next(line for line in out.splitlines() if line.startswith("export "))
    return {**env, **dict(word.split("=", 1) for word in shlex.split(exports)[1:])}


def run_step(step: Step, env: dict[str, str]) -> tuple[float, str]:
    """Runs the step as a learner would; returns the first terminal's wall-clock seconds and what it printed."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv(step.command), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    printed = bytearray()
    reader = threading.Thread(target=lambda: [printed.extend(chunk) for chunk in iter(
        lambda: os.read(proc.stdout.fileno(), 65536), b"")], daemon=True)
    reader.start()

    def wait_for(pattern: str) -> None:
        while not re.search(pattern, printed.decode(errors="replace")):
            if proc.poll() is not None:
                sys.exit(f"error: `{step.command}` ended before printing {pattern!r}:\n{printed.decode()[-800:]}")
            time.sleep(0.2)

    second = None
    try:
        if step.second:
            wait_for(step.after)
            second = subprocess.run(argv(step.second) + ["--wait", "120"], cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=180)
        if step.ctrl_c:
            wait_for(step.ctrl_c)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"error: `{step.command}` failed (exit {proc.returncode}):\n{printed.decode()[-800:]}")
    if second is not None and second.returncode != 0:
        sys.exit(f"error: `{step.second}` failed (exit {second.returncode}): {second.stderr.strip()[-500:]}")
    return wall, tail(printed.decode(errors="replace"), 2000)


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=MODULES, help="only this module (repeatable)")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for workshop_times.json")
    options = parser.parse_args(args)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a fresh local Ray each time
    steps, env = [], base
    try:
        for module in options.module or MODULES:
            for step in WORKSHOP[module]:
                wall, output = run_step(step, env)
                env = cluster_env(base) if step is CLUSTER_UP else base if step is CLUSTER_DOWN else env
                shown = step.command + (f"  (second terminal: {step.second})" if step.second else "") + \
                    ("  (Ctrl-C once a trial has finished)" if step.ctrl_c else "")
                steps.append({"module": module, "command": shown, "seconds": round(wall, 1), "output": output})
                print(f"{wall:7.1f} s  {shown}", flush=True)
    finally:
        if env is not base:  # a step failed between cluster-up and cluster-down
            subprocess.run(argv(CLUSTER_DOWN.command), cwd=ROOT, env=base)
    out = options.reports / "workshop_times.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**stamp(), "steps": steps}, indent=2) + "\n")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
