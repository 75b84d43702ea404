"""A review sentiment classifier (MiniLM) behind an HTTP API, served with FastAPI + uvicorn in one process.

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
import threading

import uvicorn
from fastapi import FastAPI, HTTPException

from workshop import cli, self_test, serve_client, text_model
from workshop.text_model import InfoResponse, PredictRequest, PredictResponse

app = FastAPI(title="Text classifier")
app.add_middleware(text_model.BodySizeLimit)  # 413 for a body over the limit, before it is read or parsed


class Classifier:
    """One model version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.model = text_model.build_model(version)  # MiniLM plus this version's head

    def predict(self, texts: list[str]) -> list[text_model.Prediction]:
        return self.model.predict(texts)  # one forward pass for all the texts

    def pid(self) -> int:
        return os.getpid()


class TextClassifierAPI:
    """The HTTP side: validation, routing to a model version."""

    def __init__(self, v1: Classifier, v2: Classifier, default_model: str = "v1") -> None:
        self.models = {"v1": v1, "v2": v2}
        self.default_model = default_model

    async def predict(self, request: PredictRequest) -> PredictResponse:
        problem = text_model.size_problem(request)
        if problem:
            raise HTTPException(status_code=413, detail=problem)
        version = request.model or self.default_model
        predictions = await asyncio.to_thread(self.models[version].predict, request.texts)  # off the event loop
        return PredictResponse(model=version, predictions=predictions)

    def healthz(self) -> dict:
        return {"status": "ok"}

    async def info(self) -> InfoResponse:
        pid = self.models[self.default_model].pid()
        return InfoResponse(default_model=self.default_model, models=sorted(self.models), pid=pid,
                            api_pid=os.getpid())


def build_app(default_model: str = "v1"):
    """Model versions v1 and v2 side by side, behind one API."""
    api = TextClassifierAPI(Classifier("v1"), Classifier("v2"), default_model)
    app.post("/predict", response_model=PredictResponse)(api.predict)
    app.get("/healthz")(api.healthz)
    app.get("/info", response_model=InfoResponse)(api.info)
    return app


def start_server(port: int, default_model: str) -> uvicorn.Server:
    """Serve the app on 127.0.0.1:port until stop_server()."""
    server = uvicorn.Server(uvicorn.Config(build_app(default_model), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, name="uvicorn").start()
    return server


def stop_server(server: uvicorn.Server) -> None:
    server.should_exit = True  # uvicorn finishes the requests in flight, then its thread ends


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

    server = start_server(port, args.default_model)
    try:
        report = self_test.serve(args, url, f"{url}/healthz", client)
    finally:
        stop_server(server)
    if report:
        serve_client.write_self_test_result(args, report)


if __name__ == "__main__":
    main()
