"""Load test (and agreement check) for the text classifier API: works against either server unchanged.

    python ray_serve/load_test.py --url http://127.0.0.1:8000 --concurrency 32 --requests 2000
    python ray_serve/load_test.py --url http://127.0.0.1:8000 --duration 30 --json report.json
    python ray_serve/load_test.py --url http://127.0.0.1:8000 --compare-with http://127.0.0.1:8001

Prints throughput, p50/p95/p99 latency and error counts by status as a table, and writes them as JSON.
With --compare-with it first sends the same fixed texts to both servers and fails (exit 1) unless the
predictions agree within --tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workshop import cli, serve_client, text_api


def check_predictions(url: str, texts: list[str], model: str | None) -> list[dict]:
    """Predictions for fixed texts, a few per request (exercising multi-text requests)."""
    predictions: list[dict] = []
    for start in range(0, len(texts), 4):
        predictions += serve_client.predict(url, texts[start:start + 4], model)["predictions"]
    return predictions


def disagreements(a: list[dict], b: list[dict], tolerance: float) -> list[str]:
    problems = []
    for i, (pa, pb) in enumerate(zip(a, b)):
        worst = max(abs(x - y) for x, y in zip(pa["scores"], pb["scores"]))
        if pa["label"] != pb["label"] or worst > tolerance:
            problems.append(f"text {i}: {pa['label']} {pa['scores']} vs {pb['label']} {pb['scores']}")
    if len(a) != len(b):
        problems.append(f"{len(a)} vs {len(b)} predictions")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the server")
    parser.add_argument("--concurrency", type=cli.positive_int, default=8, help="requests in flight at once")
    parser.add_argument("--requests", type=cli.positive_int, default=None, help="total requests (default 200)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of load instead of --requests")
    parser.add_argument("--texts-per-request", type=cli.positive_int, default=1, help="texts in each request")
    parser.add_argument("--model", choices=text_api.MODEL_VERSIONS, default=None, help="model version to ask for")
    parser.add_argument("--check-texts", type=int, default=16, help="fixed texts whose predictions are reported")
    parser.add_argument("--compare-with", default=None, help="second server URL: check both agree before the load")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max score difference for agreement")
    parser.add_argument("--seed", type=int, default=0, help="seed for the generated texts")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as failed")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the server to answer /healthz")
    parser.add_argument("--json", type=Path, default=None, help="also write the report to this JSON file")
    args = parser.parse_args()
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be > 0")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    if args.requests is None and args.duration is None:
        args.requests = 200
    url = args.url.rstrip("/")

    try:
        serve_client.wait_until_healthy(url, timeout=args.wait)
    except TimeoutError:
        cli.fail(f"no server answers at {url}; start one (see ray_serve/README.md) or pass --url")

    report: dict = {"url": url}
    check = text_api.sample_texts(args.check_texts, seed=args.seed + 1)
    if check:
        report["check_texts"] = check
        report["check_predictions"] = check_predictions(url, check, args.model)
    if args.compare_with:
        other = args.compare_with.rstrip("/")
        problems = disagreements(report["check_predictions"], check_predictions(other, check, args.model),
                                 args.tolerance)
        report["agreement"] = {"with": other, "texts": len(check), "problems": problems}
        if problems:
            print(json.dumps(report["agreement"], indent=2))
            cli.fail(f"{url} and {other} disagree on {len(problems)} of {len(check)} texts")
        print(f"Agreement: {url} and {other} give the same predictions for {len(check)} texts "
              f"(tolerance {args.tolerance})")

    texts = text_api.sample_texts(512, seed=args.seed)
    what = f"{args.requests} requests" if args.requests else f"{args.duration:g} s"
    print(f"Load: {what} at concurrency {args.concurrency} against {url}", flush=True)
    report.update(serve_client.run_load(url, texts, args.concurrency, args.requests, args.duration,
                                        args.texts_per_request, args.model, args.timeout, announce=10))
    print(serve_client.format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"Report: {args.json}")
    sys.exit(0)


if __name__ == "__main__":
    main()
