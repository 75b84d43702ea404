"""The Serve autoscaler during a load ramp, and the FastAPI baseline at concurrency 32 for reference.

    python ray_serve/benchmarks/load_ramp.py                 # about 3-4 minutes
    python ray_serve/benchmarks/load_ramp.py --smoke-test    # a few seconds per stage, to check that it runs

1. The baseline server (a subprocess) takes the shared load test at concurrency 32: throughput and p99.
2. The Ray Serve app (started here, ray.init() + serve.run) takes a ramp of stages with rising then falling
   concurrency; every second this script records the RUNNING replicas of each deployment (serve.status()).
Each load runs in its own process (ray_serve/load_test.py), so the client never shares a GIL with a server.
Writes reports/ray_serve_load_ramp.json, .md (per-stage table and a replica timeline) and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
import ray.cloudpickle  # noqa: E402
from ray import serve  # noqa: E402

from ray_serve.ray_version import text_classifier_server as ray_server  # noqa: E402
from tools import tour  # noqa: E402
from workshop import cli, serve_client  # noqa: E402

LOAD_TEST = ROOT / "ray_serve" / "load_test.py"
BASELINE = ROOT / "ray_serve" / "baseline" / "text_classifier_server.py"
REPORTS = ROOT / "reports"


def load(url: str, concurrency: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, str(LOAD_TEST), "--url", url, "--duration", str(seconds), "--concurrency",
             str(concurrency), "--check-texts", "0", "--json", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120,
        )
        if proc.returncode != 0:
            cli.fail(f"load test against {url} failed: {proc.stderr.strip()[-300:]}")
        return json.loads(path.read_text())


def baseline_at(concurrency: int, seconds: float) -> dict:
    port = serve_client.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    server = subprocess.Popen([sys.executable, str(BASELINE), "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        serve_client.wait_until_healthy(url, timeout=120)
        return load(url, concurrency, seconds)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)



def serve_replicas() -> dict[str, int]:
    """Running replicas per deployment of the app: the autoscaler's current decision."""
    status = serve.status().applications[ray_server.APP_NAME]
    return {name: d.replica_states.get("RUNNING", 0) for name, d in status.deployments.items()}

class ReplicaSampler(threading.Thread):
    """Every second: the RUNNING replicas of each deployment of the app."""

    def __init__(self, started: float) -> None:
        super().__init__(daemon=True)
        self.started, self.samples, self.stop_event = started, [], threading.Event()
        self.concurrency = 0

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.samples.append({"t": round(time.perf_counter() - self.started, 1),
                                 "concurrency": self.concurrency, **serve_replicas()})


def write_reports(result: dict, smoke: bool, reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    stem = reports / ("ray_serve_load_ramp" + ("_smoke" if smoke else ""))
    lines = [f"# Ray Serve load ramp ({result['machine']})", "",
             "| server | concurrency | requests/s | p50 ms | p99 ms | failed | replicas (ClassifierV1) |",
             "|---|---|---|---|---|---|---|"]
    b = result["baseline_c32"]
    lines.append(f"| FastAPI baseline | {b['concurrency']} | {b['throughput_rps']:.1f} | {b['p50_ms']:.1f} | "
                 f"{b['p99_ms']:.1f} | {b['failed']} | - |")
    for s in result["stages"]:
        lines.append(f"| Ray Serve | {s['concurrency']} | {s['throughput_rps']:.1f} | {s['p50_ms']:.1f} | "
                     f"{s['p99_ms']:.1f} | {s['failed']} | {s['replicas_min']}..{s['replicas_max']} |")
    ray32 = [s for s in result["stages"] if s["concurrency"] == 32]
    if ray32 and b["throughput_rps"]:
        lines += ["", f"Ray Serve / baseline throughput at concurrency 32: "
                      f"{ray32[0]['throughput_rps'] / b['throughput_rps']:.1f}x"]
    lines += ["", "Replica timeline (every 5 s):", "", "| t (s) | concurrency | ClassifierV1 | TextClassifierAPI |",
              "|---|---|---|---|"]
    lines += [f"| {x['t']:.0f} | {x['concurrency']} | {x.get('ClassifierV1', 0)} | {x.get('TextClassifierAPI', 0)} |"
              for x in result["timeline"][::5]]
    text = "\n".join(lines) + "\n"
    stem.with_suffix(".json").write_text(json.dumps({**result, "table": lines}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(text)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        t = [x["t"] for x in result["timeline"]]
        ax.step(t, [x.get("ClassifierV1", 0) for x in result["timeline"]], where="post", label="ClassifierV1 replicas")
        ax.set_xlabel("seconds")
        ax.set_ylabel("replicas")
        ax2 = ax.twinx()
        ax2.step(t, [x["concurrency"] for x in result["timeline"]], where="post", color="gray", linestyle="--",
                 label="client concurrency")
        ax2.set_ylabel("concurrency")
        fig.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(stem.with_suffix(".png"), dpi=100)
    except ImportError:
        pass
    print(f"Reports: {stem}.json, .md, .png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--smoke-test", action="store_true", help="3 s stages, to check that it runs")
    parser.add_argument("--stage-seconds", type=float, default=25.0, help="seconds of load per stage")
    parser.add_argument("--ramp", type=cli.positive_int, nargs="+", default=[2, 8, 32, 64, 32, 4],
                        help="client concurrency of each Ray stage")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="folder for the report files")
    args = parser.parse_args()
    if args.smoke_test:
        args.stage_seconds, args.ramp = 3.0, [2, 32, 4]

    print(f"Baseline at concurrency 32 for {args.stage_seconds:g} s", flush=True)
    baseline = baseline_at(32, args.stage_seconds)

    ray.init()
    ray.cloudpickle.register_pickle_by_value(ray_server)  # replicas get the classes by value, not by module path
    port = serve_client.free_port()
    url = f"http://127.0.0.1:{port}"
    stages = []
    try:
        ray_server.start_server(port, default_model="v1")
        serve_client.wait_until_healthy(url)
        sampler = ReplicaSampler(time.perf_counter())
        sampler.start()
        for concurrency in args.ramp:
            print(f"Ray Serve at concurrency {concurrency} for {args.stage_seconds:g} s", flush=True)
            sampler.concurrency = concurrency
            first = len(sampler.samples)
            report = load(url, concurrency, args.stage_seconds)
            seen = [x.get("ClassifierV1", 0) for x in sampler.samples[first:]] or [0]
            stages.append({**report, "replicas_min": min(seen), "replicas_max": max(seen)})
        sampler.stop_event.set()
        sampler.join()
    finally:
        ray_server.stop_server()  # this app only, not other apps of a shared cluster
    write_reports({**tour.stamp(), "baseline_c32": baseline,
                   "stages": stages, "timeline": sampler.samples}, args.smoke_test, args.reports)


if __name__ == "__main__":
    main()
