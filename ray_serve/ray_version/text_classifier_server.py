"""A review sentiment classifier (MiniLM) behind an HTTP API, served with Ray Serve: batching, autoscaling.

Routes (the same on both sides): POST /predict, GET /healthz, GET /info; schemas and limits are in
workshop/text_api.py, the model (MiniLM embeddings, two heads: v1 and v2) in workshop/text_model.py.
Run it, leave it up (Ctrl-C stops it) and load it from a second terminal with ray_serve/load_test.py
(ray_serve/README.md). With --smoke-test (or --load-requests) it checks and loads itself, writes
result.json and exits (workshop/self_test.py).

Diff it with its twin to see the Ray changes (the numbered comments are explained in ray_serve/README.md):

    diff -u ray_serve/baseline/text_classifier_server.py ray_serve/ray_version/text_classifier_server.py
"""

from __future__ import annotations

import asyncio
import os

import ray
from fastapi import FastAPI, HTTPException
from ray import serve
from ray.serve.handle import DeploymentHandle

from workshop import cli, ray_connect, self_test, serve_client, text_model
from workshop.text_model import InfoResponse, PredictRequest, PredictResponse

APP_NAME = "text_classifier"  # the Serve application's name
app = FastAPI(title="Text classifier")
app.add_middleware(text_model.BodySizeLimit)  # 413 for a body over the limit, before it is read or parsed


@serve.deployment(  # [1] a deployment: a class that Serve runs as one or more replica actors
    ray_actor_options={"num_cpus": 0.5},  # half a CPU each: two replicas share one, each with one torch thread
    max_ongoing_requests=64,  # must exceed max_batch_size, or a replica never sees a full batch
    autoscaling_config={"min_replicas": 1, "max_replicas": 2,  # [1] 1 to 2 replicas, following the load: one
                        "target_ongoing_requests": 16, "upscale_delay_s": 3, "downscale_delay_s": 30},  # more at 16
)
class Classifier:
    """One model version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.model = text_model.build_model(version)  # MiniLM plus this version's head

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)  # [2] concurrent calls of one text: one list
    async def predict(self, texts: list[str]) -> list[text_model.Prediction]:
        return self.model.predict(texts)  # one forward pass for all the texts

    def pid(self) -> int:
        return os.getpid()


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=256)  # async: many in flight
@serve.ingress(app)  # [3] the same FastAPI app, its routes now methods of a deployment
class TextClassifierAPI:
    """The HTTP side: validation, routing to a model version."""

    def __init__(self, v1: DeploymentHandle, v2: DeploymentHandle, default_model: str = "v1") -> None:  # [4]
        self.models = {"v1": v1, "v2": v2}
        self.default_model = default_model

    def reconfigure(self, config: dict) -> None:  # [5] user_config from a config file, applied in place
        self.default_model = config.get("default_model", self.default_model)

    @app.post("/predict", response_model=PredictResponse)
    async def predict(self, request: PredictRequest) -> PredictResponse:
        problem = text_model.size_problem(request)
        if problem:
            raise HTTPException(status_code=413, detail=problem)
        version = request.model or self.default_model
        try:  # [4] call another deployment, once per text: its batching merges them with other requests' texts
            predictions = await asyncio.gather(*(self.models[version].predict.remote(t) for t in request.texts))
        except ray.exceptions.RayActorError as exc:  # its replica died mid-request: 503, retry
            raise HTTPException(status_code=503, detail=f"model replica unavailable, retry: {type(exc).__name__}")
        return PredictResponse(model=version, predictions=predictions)

    @app.get("/healthz")
    def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/info", response_model=InfoResponse)
    async def info(self) -> InfoResponse:
        pid = await self.models[self.default_model].pid.remote()  # the model replica's own process id
        return InfoResponse(default_model=self.default_model, models=sorted(self.models), pid=pid,
                            api_pid=os.getpid())


def build_app(default_model: str = "v1"):
    """Model versions v1 and v2 side by side, behind one API."""
    v1 = Classifier.options(name="ClassifierV1").bind("v1")  # [6] two deployments of one class, bound into
    v2 = Classifier.options(name="ClassifierV2").bind("v2")  # one application graph (nothing runs yet)
    return TextClassifierAPI.options(user_config={"default_model": default_model}).bind(v1, v2)


def start_server(port: int, default_model: str) -> None:
    """Serve the app on 127.0.0.1:port until stop_server()."""
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")  # [7] one proxy
    serve.run(build_app(default_model), name=APP_NAME, logging_config={"enable_access_log": False})  # [7] deploy


def stop_server() -> None:
    serve.delete(APP_NAME)  # [7] remove this app and its replicas (not other apps of a shared cluster)
    if not serve.status().applications:  # nothing else deployed: stop Serve's proxy too, freeing the port
        serve.shutdown()


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
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
    port = args.port or (serve_client.free_port() if args.load_requests else 8000)
    if serve_client.port_in_use(port):
        cli.fail(f"port {port} is already in use on 127.0.0.1; stop the program using it or pass --port")
    url = f"http://127.0.0.1:{port}"
    client = serve_client.load_test_command(url, args)  # the self-test's client, found before the server starts
    cli.prepare_output(args.output)

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init()  # [8] start or join a Ray cluster (RAY_ADDRESS), as every workshop script does
    try:
        start_server(port, args.default_model)
        report = self_test.serve(args, url, f"{url}/healthz", client)
    finally:
        stop_server()
    if report:
        serve_client.write_self_test_result(args, report)


app_graph = build_app()  # [9] the import path for `serve build` / `serve run`: ...text_classifier_server:app_graph
if __name__ == "__main__":
    main()
