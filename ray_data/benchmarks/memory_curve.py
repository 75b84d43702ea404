"""Peak memory of the pandas baseline and of the Ray Data version at 1x and 4x input, and a memory cap that
the baseline cannot live under while the Ray version can.

    python ray_data/benchmarks/memory_curve.py                 # 100,000 and 400,000 reviews, several minutes
    python ray_data/benchmarks/memory_curve.py --smoke-test    # tiny sizes, to check that it runs

The model stage of the pair is MiniLM, a few milliseconds per review: 400,000 reviews would take most of an
hour on 2 cores, and at the sizes MiniLM can do in minutes the data is small next to the model and the runtime,
so there is no memory curve to see. This benchmark is about the pipeline's memory, not the model: by default it
passes `--model` a tiny random-init BERT encoder with MiniLM's tokenizer (1 layer, 64 numbers per embedding;
built once into outputs/, a second) and `--batch-size 512`, about 0.3 ms of CPU per review (measured, one
thread). `--model minilm` measures the real model instead (choose --rows accordingly, e.g. 4000).

Each run is a subprocess (`preprocess_reviews.py --input ...`), polled every 0.1 s with psutil:
- driver RSS: resident memory of the script's own process (the pandas process; the Ray driver);
- tree PSS: proportional set size of the script plus every process it started (for Ray: GCS, raylet,
  workers, object store pages), shared pages split between the processes that map them, sampled every 0.5 s.
The cap run applies a resident-memory limit to the driver process, enforced by this harness (the process is
killed when its RSS passes the cap, as a container's memory limit would), to both sides at the 4x size.
Writes reports/ray_data_memory_curve.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.tour import machine_description  # noqa: E402
from workshop import cli, models, reviews  # noqa: E402

SCRIPT = "ray_data/{side}/preprocess_reviews.py"
SIDES = ("baseline", "ray_version")
MB = 1024 * 1024


def tree_pss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def tiny_encoder(folder: Path) -> Path:
    """A random-init one-layer BERT with MiniLM's tokenizer, saved as a model folder (made once)."""
    if models.model_problem(folder) is None:
        return folder
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                        max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(models.encoder_folder()).save_pretrained(folder)
    return folder


def measure(side: str, data: Path, out: Path, model: str, cap_mb: float | None = None,
            timeout: float = 900) -> dict:
    """Run one side on `data`; peak driver RSS and tree PSS in MB, wall time, and whether it was capped."""
    # No RAY_ADDRESS: the Ray side starts a private local Ray whose processes are children we can measure.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    log = out.with_suffix(".log")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as log_file:
        command = [sys.executable, SCRIPT.format(side=side), "--input", str(data), "--output", str(out),
                   *(["--model", model, "--batch-size", "512"] if model else [])]
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        peak = {"driver": 0, "tree": 0, "killed": False}

        def poll():
            last_tree = 0.0
            while proc.poll() is None:
                try:
                    rss = ps.memory_info().rss
                except psutil.NoSuchProcess:
                    break
                peak["driver"] = max(peak["driver"], rss)
                if cap_mb is not None and rss > cap_mb * MB:
                    peak["killed"] = True
                    for child in ps.children(recursive=True):
                        child.kill()
                    ps.kill()
                    break
                if time.perf_counter() - last_tree > 0.5:
                    peak["tree"] = max(peak["tree"], tree_pss(ps))
                    last_tree = time.perf_counter()
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        poller.join()
    result_file = out / cli.RESULT_FILE
    seconds = json.loads(result_file.read_text())["seconds"] if code == 0 and result_file.exists() else None
    return {"side": side, "exit_code": code, "completed": code == 0, "killed_by_cap": peak["killed"],
            "driver_peak_mb": round(peak["driver"] / MB), "tree_peak_pss_mb": round(peak["tree"] / MB),
            "work_seconds": seconds, "wall_seconds": round(time.perf_counter() - started, 1), "log": str(log)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--rows", type=cli.positive_int, default=100_000, help="reviews at 1x")
    parser.add_argument("--factor", type=cli.positive_int, default=4, help="larger input = factor x rows")
    parser.add_argument("--cap-mb", type=float, default=None,
                        help="driver memory cap for the cap run (default: halfway between the Ray driver's "
                             "and the baseline's peak at the larger size)")
    parser.add_argument("--model", choices=("tiny", "minilm"), default="tiny",
                        help="the encoder both sides run: a tiny random-init BERT (memory, not model) or MiniLM")
    parser.add_argument("--smoke-test", action="store_true", help="2,000 rows, the Ray side alone under the cap (a check that it runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the generated reviews")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for the report files")
    args = parser.parse_args()
    if args.smoke_test:
        args.rows, args.factor = 2_000, 1
    work = ROOT / "outputs" / "ray_data" / "memory_curve"
    model = str(tiny_encoder(work / "tiny_encoder")) if args.model == "tiny" else None
    sizes = sorted({args.rows, args.rows * args.factor})  # one size when --factor is 1
    data = {rows: reviews.cached_dataset(rows, args.seed, root=ROOT / "outputs" / "data" / "ray_data")
            for rows in sizes}

    curve = []
    for rows in sizes:
        for side in SIDES:
            print(f"{side} on {rows:,} rows ...", flush=True)
            run = measure(side, data[rows], work / f"{side}_{rows}", model)
            curve.append({"rows": rows, **run})
            print(f"  driver peak {run['driver_peak_mb']:,} MB, tree peak {run['tree_peak_pss_mb']:,} MB, "
                  f"work {run['work_seconds']} s, exit {run['exit_code']}")
    big = {r["side"]: r for r in curve if r["rows"] == sizes[-1]}
    cap = args.cap_mb or round((big["baseline"]["driver_peak_mb"] + big["ray_version"]["driver_peak_mb"]) / 2)
    capped = []
    for side in SIDES[1:] if args.smoke_test else SIDES:  # --smoke-test: the Ray side's cap run only
        print(f"{side} on {sizes[-1]:,} rows under a {cap:,} MB driver cap ...", flush=True)
        run = measure(side, data[sizes[-1]], work / f"{side}_{sizes[-1]}_capped", model, cap_mb=cap)
        capped.append({"rows": sizes[-1], "cap_mb": cap, **run})
        killed = " (killed at the cap)" if run["killed_by_cap"] else ""
        status = "completed" if run["completed"] else "FAILED"
        print(f"  {status}{killed}, driver peak {run['driver_peak_mb']:,} MB")

    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine_description(),
              "sizes": sizes, "curve": curve, "cap_mb": cap, "capped": capped, "versions": cli.versions(),
              "cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
              "smoke_test": args.smoke_test, "model": args.model}
    lines = [
        f"# ray_data memory curve ({os.cpu_count()} CPUs, {report['memory_gb']} GB RAM, "
        f"{'tiny random-init encoder' if args.model == 'tiny' else 'MiniLM'})", "",
        "| side | rows | driver peak RSS (MB) | process tree peak PSS (MB) | work s |",
        "|---|---:|---:|---:|---:|",
        *(f"| {r['side']} | {r['rows']:,} | {r['driver_peak_mb']:,} | {r['tree_peak_pss_mb']:,} | "
          f"{r['work_seconds'] if r['work_seconds'] is not None else 'failed'} |" for r in curve),
        "", f"Driver memory cap {cap:,} MB at {sizes[-1]:,} rows:", "",
        *(f"- {r['side']}: {'completed' if r['completed'] else 'failed'}"
          f"{' (killed at the cap)' if r['killed_by_cap'] else ''}, driver peak {r['driver_peak_mb']:,} MB"
          for r in capped),
    ]
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / "ray_data_memory_curve.json").write_text(
        json.dumps({**report, "table": lines[2:]}, indent=2) + "\n")
    (args.reports / "ray_data_memory_curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"Report: {args.reports / 'ray_data_memory_curve.md'}")


if __name__ == "__main__":
    main()
