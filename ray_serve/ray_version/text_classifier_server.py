"""A review sentiment classifier (MiniLM) behind an HTTP API, served with Ray Serve: batching, autoscaling,
composition, versions.

Routes (the same as the FastAPI baseline): POST /predict, GET /healthz, GET /info; schemas and limits are in
workshop/text_api.py, the model (MiniLM embeddings, two heads: v1 and v2) in workshop/text_model.py.
Run it and leave it up (Ctrl-C stops it), then load it from a second terminal:

    python ray_serve/ray_version/text_classifier_server.py --port 8000
    python ray_serve/load_test.py --url http://127.0.0.1:8000 --concurrency 32 --requests 2000

With --smoke-test (or --load-requests) it starts, checks its answers through the shared client, runs a
short load test, writes result.json and exits. The same app runs from the config file
ray_serve/serve_config.yaml with `serve run` / `serve deploy` (see ray_serve/README.md).

Twin: ray_serve/baseline/text_classifier_server.py (diff the two files to see the Ray changes; the numbered
comments are explained in ray_serve/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
import torch
from fastapi import FastAPI, HTTPException
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle

from workshop import cli, ray_connect, serve_client, text_model
from workshop.text_model import InfoResponse, PredictRequest, PredictResponse

MODULE, PAIR, SIDE = "ray_serve", "text_classifier_server", "ray_version"
LOAD_TEST = Path(__file__).resolve().parent.parent / "load_test.py"
APP_NAME = "text_classifier"

app = FastAPI(title="Text classifier")
app.add_middleware(text_model.BodySizeLimit)  # 413 for a body over the limit, before it is read or parsed


@serve.deployment(  # [1] a deployment: a class that Serve runs as one or more replica actors
    ray_actor_options={"num_cpus": 0.5},  # [2] half a logical CPU: two replicas fit where one CPU is free
    max_ongoing_requests=64,  # [3] must exceed max_batch_size, or a replica never sees a full batch
    autoscaling_config={  # [4] Serve adds a replica when each has more than 16 requests waiting on average
        "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16,
        "upscale_delay_s": 3, "downscale_delay_s": 30,
    },
)
class Classifier:
    """One model version in each replica process."""

    def __init__(self, version: str) -> None:
        # [5] one torch thread per reserved CPU (at least one): more replicas, not more threads, use more cores
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.version = version
        self.model = text_model.build_model(version)  # MiniLM plus this version's head

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)  # [6] concurrent calls arrive as one list
    async def predict(self, texts_per_request: list[list[str]]) -> list[list[text_model.Prediction]]:
        flat = [text for texts in texts_per_request for text in texts]
        predictions = self.model.predict(flat)  # one forward pass (tokenise + embed + head) for the whole batch
        out, start = [], 0
        for texts in texts_per_request:  # hand each caller back its own slice
            out.append(predictions[start:start + len(texts)])
            start += len(texts)
        return out

    def pid(self) -> int:
        return os.getpid()


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=256)  # [7] async: many in flight
@serve.ingress(app)  # [8] the same FastAPI app, its routes now methods of a deployment
class TextClassifierAPI:
    """The HTTP side: validation, routing to a model version (a deployment of its own)."""

    def __init__(self, v1: DeploymentHandle, v2: DeploymentHandle, default_model: str = "v1") -> None:
        self.models = {"v1": v1, "v2": v2}  # [9] handles to other deployments: composition
        self.default_model = default_model

    def reconfigure(self, config: dict) -> None:  # [10] user_config from a config file, applied in place
        self.default_model = config.get("default_model", self.default_model)

    @app.post("/predict", response_model=PredictResponse)
    async def predict(self, request: PredictRequest) -> PredictResponse:
        problem = text_model.size_problem(request)
        if problem:
            raise HTTPException(status_code=413, detail=problem)
        version = request.model or self.default_model
        try:
            predictions = await self.models[version].predict.remote(request.texts)  # [11] call another deployment
        except (RayActorError, ActorUnavailableError) as exc:  # [11] its replica died mid-request: 503, retry
            raise HTTPException(status_code=503, detail=f"model replica unavailable, retry: {type(exc).__name__}")
        return PredictResponse(model=version, predictions=predictions)

    @app.get("/healthz")
    def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/info", response_model=InfoResponse)
    async def info(self) -> InfoResponse:
        pid = await self.models[self.default_model].pid.remote()  # [12] the model replica's own process id
        return InfoResponse(default_model=self.default_model, models=sorted(self.models), pid=pid,
                            api_pid=os.getpid())


def build_app(default_model: str = "v1"):
    """The application graph: v1 and v2 side by side, both behind one ingress. Nothing runs until serve.run."""
    # [13] .bind() builds the application graph; .options() makes two deployments of one class
    v1 = Classifier.options(name="ClassifierV1").bind("v1")
    v2 = Classifier.options(name="ClassifierV2").bind("v2")
    return TextClassifierAPI.options(user_config={"default_model": default_model}).bind(v1, v2)


app_graph = build_app()  # [14] the import path for `serve build` / `serve run`: ...text_classifier_server:app_graph


def start_server(port: int, default_model: str) -> None:
    """Start Serve's HTTP proxy on 127.0.0.1:port and deploy the app; it keeps serving until serve.shutdown()."""
    # [15] HTTP options are cluster-wide and set before the first app. HeadOnly: one proxy, on the head node
    # (with EveryNode, the default, a second node on the same machine would try to open the same port)
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    # [16] deploy the app (returns once every replica is up); no access log line per request
    serve.run(build_app(default_model), name=APP_NAME, route_prefix="/",
              logging_config={"enable_access_log": False})


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

    if args.trace:  # Serve's own actors record the task events a timeline shows only when this is set as Ray starts
        os.environ.setdefault("RAY_SERVE_ENABLE_TASK_EVENTS", "1")
    started = time.perf_counter()
    ray_connect.preflight()  # one clear line in seconds, not a traceback or a long wait, if the cluster is unreachable
    ray.init()  # [17] start or join a Ray cluster (RAY_ADDRESS), as every workshop script does
    ray_connect.require_resources(1.5, "CPU", " (3 replicas x 0.5 CPU)")
    try:
        start_server(port, args.default_model)
        if not self_test:
            print(f"Serving on {url} (POST /predict, GET /healthz, GET /info); Ctrl-C stops it", flush=True)
            try:
                while True:
                    time.sleep(1)  # Serve's replicas and proxy serve; this process only waits for Ctrl-C
            except KeyboardInterrupt:
                pass
            print("Shut down", flush=True)
            return
        output = cli.prepare_output(args.output)
        serve_client.wait_until_healthy(url)
        startup = time.perf_counter() - started
        print(f"Serving on {url}; up in {startup:.1f} s", flush=True)
        with cli.Timer() as timer:
            report = run_self_test(url, args.load_requests, args.concurrency, args.seed)
        replicas = serve_replicas()
        if args.trace:  # [18] every task and actor call of this job, as a timeline for Perfetto (while they live)
            ray.timeline(filename=str(args.trace))
    finally:
        serve.delete(APP_NAME)  # [19] remove this app and its replicas (not other apps of a shared cluster)
        if not serve.status().applications:  # nothing else deployed: stop Serve's proxy too, freeing the port
            serve.shutdown()

    predictions = report["check_predictions"]
    if report["failed"] or not predictions or any(p["label"] not in text_model.LABELS for p in predictions):
        cli.fail(f"self-test failed: {report['failed']} failed requests {report['errors_by_status']}")
    print(f"Self-test passed: {report['ok']} requests in {timer.seconds:.2f} s, "
          f"{report['throughput_rps']:.1f} requests/s, p99 {report['p99_ms']:.1f} ms")
    path = cli.write_result(
        output, module=MODULE, pair=PAIR, side=SIDE, seconds=timer.seconds, smoke_test=args.smoke_test,
        answer={"labels": [p["label"] for p in predictions],
                "scores": [[round(s, 4) for s in p["scores"]] for p in predictions]},
        startup_seconds=round(startup, 3), load=report, replicas=replicas,
        example={"input": report["check_texts"][0],
                 "output": f"{predictions[0]['label']} ({max(predictions[0]['scores']):.2f})"},
    )
    print(f"Result: {path}")


def serve_replicas() -> dict[str, int]:
    """Running replicas per deployment (the autoscaler's current decision)."""
    status = serve.status().applications[APP_NAME]  # [20] what Serve runs now, per deployment
    return {name: d.replica_states.get("RUNNING", 0) for name, d in status.deployments.items()}


if __name__ == "__main__":
    main()
