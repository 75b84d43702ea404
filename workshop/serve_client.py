"""The one client of the ray_serve module: it talks to either server (FastAPI baseline or Ray Serve) unchanged.

- `predict(url, texts)`: one request, synchronous (standard library only).
- `run_load(url, ...)`: an asyncio load generator (aiohttp, installed with ray[serve]) with a fixed
  concurrency, for a number of requests or a duration; returns throughput, latency percentiles, errors by
  status, and how long the server took to recover when requests failed.
- `port_in_use`, `free_port`, `wait_until_healthy`: what a server script needs to start cleanly.
- `load_test_command`, `write_self_test_result`: the servers' self-test (workshop/self_test.py) with
  ray_serve/load_test.py, and the result.json it leaves.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Optional

from workshop import cli, self_test, text_api


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def request(url: str, method: str = "GET", body: Any = None, raw: Optional[bytes] = None, timeout: float = 30,
            content_type: str = "application/json"):
    """(status, parsed JSON body) of one HTTP request; 4xx/5xx are returned, not raised."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, text.decode(errors="replace")


def predict(url: str, texts: list[str], model: Optional[str] = None, timeout: float = 30) -> dict:
    """POST /predict; raises RuntimeError with the server's message on a non-200 answer."""
    body: dict[str, Any] = {"texts": texts}
    if model:
        body["model"] = model
    status, answer = request(f"{url}/predict", "POST", body, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"POST /predict answered {status}: {answer}")
    return answer


def wait_until_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if request(f"{url}/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/healthz did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


async def _load(url, texts, concurrency, requests, duration, texts_per_request, model, timeout, announce):
    import aiohttp

    records: list[tuple[float, float, str]] = []  # (start, end, status) relative to the load start
    started = time.perf_counter()
    deadline = started + duration if duration else None
    counter = iter(range(requests if requests else 10**12))
    in_flight = 0

    async def worker(session):
        nonlocal in_flight
        for i in counter:
            if deadline and time.perf_counter() >= deadline:
                return
            batch = [texts[(i * texts_per_request + j) % len(texts)] for j in range(texts_per_request)]
            body: dict[str, Any] = {"texts": batch}
            if model:
                body["model"] = model
            t0 = time.perf_counter()
            in_flight += 1
            try:
                async with session.post(f"{url}/predict", json=body) as resp:
                    await resp.read()
                    status = str(resp.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            in_flight -= 1
            records.append((t0 - started, time.perf_counter() - started, status))
            if announce and len(records) == announce:  # the server has answered; the load is under way
                print(f"Load under way: {len(records)} answered, {in_flight} in flight", flush=True)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return records, time.perf_counter() - started


def run_load(
    url: str,
    texts: list[str],
    concurrency: int = 8,
    requests: Optional[int] = None,
    duration: Optional[float] = None,
    texts_per_request: int = 1,
    model: Optional[str] = None,
    timeout: float = 30.0,
    announce: int = 0,
) -> dict:
    """Send requests from `concurrency` concurrent clients; return the report (see `summarize`). With
    `announce`, print one line once that many requests have been answered, with the number still in flight."""
    if not requests and not duration:
        raise ValueError("give a number of requests or a duration")
    records, wall = asyncio.run(_load(url, texts, concurrency, requests, duration, texts_per_request, model, timeout,
                                      announce))
    return summarize(records, wall, concurrency)


def summarize(records: list[tuple[float, float, str]], wall: float, concurrency: int) -> dict:
    ok = [end - start for start, end, status in records if status == "200"]
    errors: dict[str, int] = {}
    for _, _, status in records:
        if status != "200":
            errors[status] = errors.get(status, 0) + 1
    report = {
        "concurrency": concurrency,
        "requests": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "errors_by_status": errors,
        "seconds": round(wall, 3),
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else 0.0,
        "p50_ms": round(percentile(ok, 50) * 1000, 2),
        "p95_ms": round(percentile(ok, 95) * 1000, 2),
        "p99_ms": round(percentile(ok, 99) * 1000, 2),
        "recovery_seconds": None,
        "ok_after_last_failure": None,
    }
    failures = sorted((end, start) for start, end, status in records if status != "200")
    if failures:
        first_failure, last_failure = failures[0][0], failures[-1][0]
        after = sorted(end for start, end, status in records if status == "200" and start >= last_failure)
        # recovery: from the first failed answer to the first good answer of a request sent after the last failure
        report["recovery_seconds"] = round(after[0] - first_failure, 3) if after else None
        report["ok_after_last_failure"] = len(after)
    return report


def format_report(report: dict) -> str:
    """The report as a small Markdown table."""
    rows = [
        ("requests (ok / failed)", f"{report['requests']} ({report['ok']} / {report['failed']})"),
        ("concurrency", report["concurrency"]),
        ("throughput", f"{report['throughput_rps']:.1f} requests/s"),
        ("latency p50 / p95 / p99", f"{report['p50_ms']:.1f} / {report['p95_ms']:.1f} / {report['p99_ms']:.1f} ms"),
        ("errors by status", ", ".join(f"{k}: {v}" for k, v in sorted(report["errors_by_status"].items())) or "none"),
    ]
    if report["failed"]:
        recovery = report["recovery_seconds"]
        rows.append(("recovery", f"{recovery:.2f} s" if recovery is not None else "not recovered"))
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def load_test_command(url: str, args) -> list[str]:
    """The self-test's client: ray_serve/load_test.py with the server's --load-requests, --concurrency, --seed
    (none without --load-requests). Called before the server starts: a missing client is one line at once."""
    if args.load_requests is None:
        return []
    return [str(self_test.find_client("load_test.py")), "--url", url, "--requests", str(args.load_requests),
            "--concurrency", str(args.concurrency), "--seed", str(args.seed)]


def write_self_test_result(args, report: dict) -> None:
    """Check the self-test's report and write result.json: the predictions for the fixed texts are the answer
    both servers must agree on; the load figures are details."""
    predictions = report["check_predictions"]
    if report["failed"] or not predictions or any(p["label"] not in text_api.LABELS for p in predictions):
        cli.fail(f"self-test failed: {report['failed']} failed requests {report['errors_by_status']}")
    print(f"Self-test passed: {report['ok']} requests in {report['seconds']:.2f} s, "
          f"{report['throughput_rps']:.1f} requests/s, p99 {report['p99_ms']:.1f} ms")
    path = cli.write_result(
        args, seconds=report["self_test_seconds"],
        answer={"labels": [p["label"] for p in predictions],
                "scores": [[round(s, 4) for s in p["scores"]] for p in predictions]},
        startup_seconds=report["startup_seconds"], load=report,
        example={"input": report["check_texts"][0],
                 "output": f"{predictions[0]['label']} ({max(predictions[0]['scores']):.2f})"},
    )
    print(f"Result: {path}")
