"""What the four servers share after their server has started: serve until Ctrl-C, or run the self-test.

A server script finds its client before it starts its server (`find_client`, through the module's helper that
builds the client's command line), then calls `serve(args, url, ready, client)` once the server has started. It waits until
`ready` answers 200 (a GET of a URL, or a POST of (URL, JSON body): the LLM servers send one completion, so
that "Serving" means a request has gone through the model). Without --load-requests it then says where it
serves and waits for Ctrl-C. With it (--smoke-test sets it), it runs the module's client
(ray_serve/load_test.py, vllm_examples/openai_client.py) in a process of its own, so that the client never
competes with the server for a CPU or the GIL, and returns the client's JSON report; the module's helper then
writes result.json. The tests, the tour and the benchmarks use the self-test. A server copied into your own
project keeps this module for its Ctrl-C wait; its self-test also needs the module's client beside the script
or one folder up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from workshop import cli


def wait_until_ready(ready: str | tuple[str, dict], timeout: float = 600.0) -> None:
    """Send `ready` (a URL to GET, or a URL and a JSON body to POST) until it answers 200; exit with one line if
    it does not within `timeout` seconds."""
    url, body = (ready, None) if isinstance(ready, str) else ready
    data = None if body is None else json.dumps(body).encode()  # with data, urllib sends a POST
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=max(5.0, deadline - time.monotonic())) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if time.monotonic() > deadline:
            cli.fail(f"the server did not answer {url} within {timeout:.0f} s; see its output above")
        time.sleep(0.2)


def find_client(name: str) -> Path:
    """The module's client script: next to the server script, or in its parent folder (as in this repository)."""
    here = Path(sys.modules["__main__"].__file__).resolve().parent
    for folder in (here, here.parent):
        if (folder / name).is_file():
            return folder / name
    cli.fail(f"the self-test needs {name} next to this script or one folder up; copy it there, or leave out "
             f"--smoke-test and --load-requests")


def serve(args: argparse.Namespace, url: str, ready: str | tuple[str, dict], client: list[str]) -> dict | None:
    """Serve until Ctrl-C (returns None), or self-test: the client's report plus `startup_seconds` (from the
    start of the script's argument parsing to the first 200 from `ready`) and `self_test_seconds`."""
    if args.load_requests is None:
        try:
            wait_until_ready(ready)
            print(f"Serving on {url}; Ctrl-C stops it", flush=True)
            while True:
                time.sleep(1)
        except KeyboardInterrupt:  # the caller stops its server
            print("Shut down", flush=True)
        return None
    wait_until_ready(ready)
    startup = time.perf_counter() - args.started
    print(f"Serving on {url}; up in {startup:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp, cli.Timer() as timer:
        report_path = Path(tmp) / "report.json"
        command = [sys.executable, *client, "--json", str(report_path)]
        helpers = str(Path(cli.__file__).resolve().parent.parent)  # the client imports the same workshop/
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [helpers, os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(command, text=True, check=False, env=env)
        if proc.returncode != 0 or not report_path.exists():
            cli.fail(f"the self-test's client failed (exit {proc.returncode}); its output is above")
        report = json.loads(report_path.read_text())
    return {**report, "startup_seconds": round(startup, 3), "self_test_seconds": round(timer.seconds, 3)}
