"""Both servers at concurrency 32, in four set-ups: is Ray Serve's batching worth it against a stronger baseline?

    python ray_serve/benchmarks/c32_servers.py                 # 3,000 requests per set-up, about 8 minutes
    python ray_serve/benchmarks/c32_servers.py --smoke-test    # 64 requests each, to check that it runs

1. FastAPI + uvicorn, one process, torch's default threads (the tour's baseline);
2. FastAPI + uvicorn --workers 2: two processes with one model copy and one torch thread each, started the way a
   FastAPI user runs it (`python -m uvicorn ... --factory text_classifier_server:build_app --workers 2`);
3. Ray Serve with @serve.batch (the tour's Ray version, its own local Ray);
4. the same with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (Ray 2.55+): the ingress replica takes HTTP itself (direct
   ingress, still on 127.0.0.1), deployments call each other over gRPC, user code and the router run on the
   replica's main event loop, the garbage collector is frozen after start-up. It is read when Ray starts, so
   it is set here in the environment of a fresh local Ray.
Set-ups 1, 3 and 4 are the server script's own self-test (`--load-requests N --concurrency 32`): it starts, sends
the shared load test from a separate process, shuts down; set-up 2 is the same load test against uvicorn's
multi-process server, stopped with Ctrl-C. The client shares the machine's cores with the server.
Writes reports/ray_serve_c32.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools import tour  # noqa: E402
from workshop import cli, serve_client  # noqa: E402

SERVER = ROOT / "ray_serve" / "{side}" / "text_classifier_server.py"
REPORTS = ROOT / "reports"
SETUPS = [
    ("FastAPI + uvicorn, 1 process", "baseline", [], {}),
    ("FastAPI + uvicorn --workers 2", "uvicorn", ["--workers", "2"], {"OMP_NUM_THREADS": "1"}),
    ("Ray Serve, @serve.batch", "ray_version", [], {}),
    ("Ray Serve, @serve.batch, RAY_SERVE_THROUGHPUT_OPTIMIZED=1", "ray_version", [],
     {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
]


def run_uvicorn(args: list[str], env: dict[str, str], requests: int, concurrency: int) -> dict:
    """uvicorn's own multi-process server with the baseline's app factory, the shared load test, then Ctrl-C."""
    port = serve_client.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "--app-dir", "ray_serve/baseline", "--factory",
               "text_classifier_server:build_app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", *args]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        started = time.perf_counter()
        serve_client.wait_until_healthy(url, timeout=300)
        startup = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            subprocess.run([sys.executable, str(ROOT / "ray_serve" / "load_test.py"), "--url", url, "--requests",
                            str(requests), "--concurrency", str(concurrency), "--json", str(report)],
                           cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, timeout=1800)
            load = json.loads(report.read_text())
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    if server.returncode != 0:
        cli.fail(f"uvicorn {' '.join(args)} did not stop cleanly (exit {server.returncode}): {stderr.strip()[-400:]}")
    return {**load, "startup_seconds": round(startup, 3),
            "labels": [p["label"] for p in load["check_predictions"]]}


def run_setup(side: str, args: list[str], extra_env: dict[str, str], requests: int, concurrency: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a fresh local Ray each time
    env.update(extra_env)
    if side == "uvicorn":
        return run_uvicorn(args, env, requests, concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, str(SERVER).format(side=side), "--load-requests", str(requests),
                   "--concurrency", str(concurrency), "--output", tmp, *args]
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            cli.fail(f"{side} {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
        result = json.loads((Path(tmp) / "result.json").read_text())
    return {**result["details"]["load"], "startup_seconds": result["details"]["startup_seconds"],
            "labels": result["answer"]["labels"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--smoke-test", action="store_true", help="64 requests per set-up, to check that it runs")
    parser.add_argument("--requests", type=cli.positive_int, default=3000, help="requests per set-up")
    parser.add_argument("--concurrency", type=cli.positive_int, default=32, help="requests in flight at once")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="folder for the report files")
    args = parser.parse_args()
    if args.smoke_test:
        args.requests = 64

    rows = []
    # --smoke-test leaves out the last set-up: the same Ray server as the one before it, with one setting more
    for label, side, extra_args, extra_env in SETUPS[:-1] if args.smoke_test else SETUPS:
        print(f"{label}: {args.requests} requests at concurrency {args.concurrency}", flush=True)
        rows.append({"label": label, **run_setup(side, extra_args, extra_env, args.requests, args.concurrency)})
    same = all(row["labels"] == rows[0]["labels"] for row in rows)
    base = rows[0]["throughput_rps"]
    lines = [f"# ray_serve at concurrency {args.concurrency} ({os.cpu_count()} CPUs, {args.requests} requests each)", "",
             "| set-up | requests/s | vs 1 process | p50 ms | p95 ms | p99 ms | failed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['throughput_rps']:.1f} | {r['throughput_rps'] / base:.2f}x | "
                     f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['failed']} |")
    lines += ["", f"Same labels for the 16 check texts in every set-up: {'yes' if same else 'NO'}"]
    text = "\n".join(lines) + "\n"
    args.reports.mkdir(parents=True, exist_ok=True)
    stem = args.reports / ("ray_serve_c32" + ("_smoke" if args.smoke_test else ""))
    stem.with_suffix(".json").write_text(json.dumps({**tour.stamp(), "rows": rows, "table": lines}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(text + f"Reports: {stem}.json, .md")
    if not same:
        cli.fail("the set-ups gave different labels for the same texts")


if __name__ == "__main__":
    main()
