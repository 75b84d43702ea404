"""A review sentiment classifier (MiniLM) behind an HTTP API, served with FastAPI + uvicorn: one process, one
model call per request.

Routes (the same on the Ray Serve twin): POST /predict, GET /healthz, GET /info; schemas and limits are in
workshop/text_api.py, the model (MiniLM embeddings, two heads: v1 and v2) in workshop/text_model.py.
Run it and leave it up (Ctrl-C stops it), then load it from a second terminal:

    python ray_serve/baseline/text_classifier_server.py --port 8000
    python ray_serve/load_test.py --url http://127.0.0.1:8000 --concurrency 32 --requests 2000

Two processes with a model copy and a torch thread each (`uvicorn --workers 2`): see ray_serve/README.md.

With --smoke-test (or --load-requests) it starts, checks its answers through the shared client, runs a
short load test, writes result.json and exits.

Twin: ray_serve/ray_version/text_classifier_server.py (diff the two files to see the Ray changes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, HTTPException

from workshop import cli, serve_client, text_model
from workshop.text_model import InfoResponse, PredictRequest, PredictResponse

MODULE, PAIR, SIDE = "ray_serve", "text_classifier_server", "baseline"
LOAD_TEST = Path(__file__).resolve().parent.parent / "load_test.py"

app = FastAPI(title="Text classifier")
app.add_middleware(text_model.BodySizeLimit)  # 413 for a body over the limit, before it is read or parsed


class Classifier:
    """One model version in this process."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.model = text_model.build_model(version)  # MiniLM plus this version's head (torch's default threads)

    def predict(self, texts: list[str]) -> list[text_model.Prediction]:
        return self.model.predict(texts)  # one forward pass per request

    def pid(self) -> int:
        return os.getpid()


class TextClassifierAPI:
    """The HTTP side: validation, routing to a model version."""

    def __init__(self, v1: Classifier, v2: Classifier, default_model: str = "v1") -> None:
        self.models = {"v1": v1, "v2": v2}
        self.default_model = default_model

    def predict(self, request: PredictRequest) -> PredictResponse:
        problem = text_model.size_problem(request)
        if problem:
            raise HTTPException(status_code=413, detail=problem)
        version = request.model or self.default_model
        predictions = self.models[version].predict(request.texts)
        return PredictResponse(model=version, predictions=predictions)

    def healthz(self) -> dict:
        return {"status": "ok"}

    def info(self) -> InfoResponse:
        pid = self.models[self.default_model].pid()
        return InfoResponse(default_model=self.default_model, models=sorted(self.models), pid=pid,
                            api_pid=os.getpid())


# Plain def (not async def): FastAPI runs each call in its thread pool, so a slow forward pass does not
# block the event loop; the model runs once per request.
api: TextClassifierAPI  # set by create_app


@app.post("/predict", response_model=PredictResponse)
def predict(request: PredictRequest) -> PredictResponse:
    return api.predict(request)


@app.get("/healthz")
def healthz() -> dict:
    return api.healthz()


@app.get("/info", response_model=InfoResponse)
def info() -> InfoResponse:
    return api.info()


def create_app(default_model: str = "v1") -> FastAPI:
    """Load both model versions into this process; the app factory (each `uvicorn --workers` process calls it)."""
    global api
    api = TextClassifierAPI(Classifier("v1"), Classifier("v2"), default_model)
    return app


def start_server(port: int, default_model: str) -> uvicorn.Server:
    """Load both model versions and build the server on 127.0.0.1:port; `server.run()` serves until Ctrl-C."""
    config = uvicorn.Config(create_app(default_model), host="127.0.0.1", port=port, log_level="warning")
    return uvicorn.Server(config)


def run_self_test(url: str, requests: int, concurrency: int, seed: int) -> dict:
    """The shared load test, in its own process (so the client never competes with the server for the GIL)."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        command = [sys.executable, str(LOAD_TEST), "--url", url, "--requests", str(requests),
                   "--concurrency", str(concurrency), "--seed", str(seed), "--json", str(report_path)]
        proc = subprocess.run(command, text=True)
        if proc.returncode != 0 or not report_path.exists():
            cli.fail(f"the self-test's load test failed (exit {proc.returncode}); its output is above")
        return json.loads(report_path.read_text())


def main() -> None:
    parser = cli.make_parser(__doc__, module=MODULE, pair=PAIR, side=SIDE)
    parser.add_argument("--port", type=cli.positive_int, default=None,
                        help="port on 127.0.0.1 (default 8000; with --smoke-test a free port)")
    parser.add_argument("--default-model", choices=text_model.MODEL_VERSIONS, default="v1",
                        help="model version for requests that do not name one")
    parser.add_argument("--load-requests", type=cli.positive_int, default=None,
                        help="self-test: send this many requests, report, shut down (benchmark mode)")
    parser.add_argument("--concurrency", type=cli.positive_int, default=32, help="self-test load concurrency")
    args = parser.parse_args()
    if args.smoke_test:
        args.load_requests, args.concurrency = args.load_requests or 48, 8
    self_test = args.load_requests is not None
    port = args.port or (serve_client.free_port() if self_test else 8000)
    if serve_client.port_in_use(port):
        cli.fail(f"port {port} is already in use on 127.0.0.1; stop the program using it or pass --port")
    url = f"http://127.0.0.1:{port}"

    started = time.perf_counter()
    server = start_server(port, args.default_model)
    try:
        if not self_test:
            print(f"Serving on {url} (POST /predict, GET /healthz, GET /info); Ctrl-C stops it", flush=True)
            try:
                server.run()  # on Ctrl-C uvicorn finishes the requests in flight, then returns or re-raises it
            except KeyboardInterrupt:
                pass
            print("Shut down", flush=True)
            return
        output = cli.prepare_output(args.output)
        threading.Thread(target=server.run, daemon=True).start()
        serve_client.wait_until_healthy(url)
        startup = time.perf_counter() - started
        print(f"Serving on {url}; up in {startup:.1f} s", flush=True)
        with cli.Timer() as timer:
            report = run_self_test(url, args.load_requests, args.concurrency, args.seed)
    finally:
        server.should_exit = True  # tell uvicorn to stop serving (the self-test is over, or Ctrl-C)

    predictions = report["check_predictions"]
    if report["failed"] or not predictions or any(p["label"] not in text_model.LABELS for p in predictions):
        cli.fail(f"self-test failed: {report['failed']} failed requests {report['errors_by_status']}")
    print(f"Self-test passed: {report['ok']} requests in {timer.seconds:.2f} s, "
          f"{report['throughput_rps']:.1f} requests/s, p99 {report['p99_ms']:.1f} ms")
    path = cli.write_result(
        output, module=MODULE, pair=PAIR, side=SIDE, seconds=timer.seconds, smoke_test=args.smoke_test,
        answer={"labels": [p["label"] for p in predictions],
                "scores": [[round(s, 4) for s in p["scores"]] for p in predictions]},
        startup_seconds=round(startup, 3), load=report,
        example={"input": report["check_texts"][0],
                 "output": f"{predictions[0]['label']} ({max(predictions[0]['scores']):.2f})"},
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
