"""An OpenAI-compatible LLM server with Ray Serve LLM: vLLM engines as autoscaling Serve replicas.

Routes (the same on both sides): GET /v1/models, POST /v1/chat/completions, POST /v1/completions (streaming
too), with OpenAI-style error bodies. Run it, leave it up (Ctrl-C stops it) and talk to it from a second
terminal with vllm_examples/openai_client.py (vllm_examples/README.md). With --smoke-test (or
--load-requests) it runs the client's API check (good and bad requests) and a short load test against
itself, writes result.json and exits (workshop/self_test.py).

Needs vLLM (CPU: `pip install --no-deps -r requirements-vllm.txt`; GPU: see vllm_examples/README.md).
Read it beside its baseline, vllm_examples/baseline/openai_server.py: most of that file is a hand-written OpenAI
layer, which this one replaces with configuration. vllm_examples/README.md has a table from each hand-written
part to what replaces it here, and explains the numbered comments.
"""

from __future__ import annotations

import ray
from ray import serve

from workshop import cli, llm_workload, models, ray_connect, self_test, serve_client

APP_NAME = "llm"


def build_app(model_name: str, args):
    """The Serve application: an OpenAI-compatible router in front of autoscaling vLLM replicas."""
    # Imported here, not at the top: ray.serve.llm loads vLLM (half a minute on a small machine), which --help
    # and a mistyped flag should not wait for.
    from ray.serve.llm import LLMConfig, build_openai_app

    llm_config = LLMConfig(  # [1] one model: where it comes from, the engine, the hardware, the replicas
        model_loading_config={"model_id": models.display_name(model_name), "model_source": model_name},
        engine_kwargs=llm_workload.engine_kwargs(args),  # vLLM's own arguments
        # [1] without this, each replica asks Ray for a GPU and, on a CPU-only cluster, never starts
        accelerator_config={"kind": "gpu" if args.use_gpu else "cpu"},
        deployment_config={  # [2] Serve options of the model deployment: autoscaling on requests in flight
            "autoscaling_config": {
                "min_replicas": args.min_replicas, "max_replicas": args.max_replicas,
                "target_ongoing_requests": 16,  # add a replica when each has more than 16 requests in flight
            },
            "max_ongoing_requests": 64,  # per replica; vLLM batches them continuously
            # the replica actor only forwards requests to its engine (which has its own CPU): a small share
            "ray_actor_options": {"num_cpus": 0.25},
        },
    )
    return build_openai_app({  # [3] the OpenAI routes, errors and streaming, in front of the model deployment
        "llm_configs": [llm_config],
        "ingress_deployment_config": {"ray_actor_options": {"num_cpus": 0.25}},  # fits on a 2-CPU laptop too
    })


def start_server(port: int, model_name: str, args) -> None:
    """Start Serve's HTTP proxy on 127.0.0.1:port and deploy the app; it serves until stop_server()."""
    # [4] HTTP options are cluster-wide and set before the first app; one proxy, on the head node
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    serve.run(build_app(model_name, args), name=APP_NAME, route_prefix="/")  # returns once the model is up


def stop_server() -> None:
    serve.delete(APP_NAME)  # [4] remove this app and its replicas (not other apps of a shared cluster)
    if not serve.status().applications:  # nothing else deployed: stop Serve's proxy too, freeing the port
        serve.shutdown()


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--port", type=cli.positive_int, default=None,
                        help="port on 127.0.0.1 (default 8000; with --smoke-test a free port)")
    parser.add_argument("--model", default=None, help=llm_workload.MODEL_HELP)
    parser.add_argument("--dtype", choices=llm_workload.DTYPES, default="float32", help="weights and compute dtype")
    parser.add_argument("--max-model-len", type=cli.positive_int, default=2048,
                        help="longest prompt + completion accepted (at most the model's context)")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per replica (CUDA vllm package)")
    parser.add_argument("--tensor-parallel-size", type=cli.positive_int, default=1,
                        help="GPUs that share one replica's engine (tensor parallel; with --use-gpu)")
    parser.add_argument("--min-replicas", type=cli.positive_int, default=1,
                        help="autoscaling: fewest replicas")
    parser.add_argument("--max-replicas", type=cli.positive_int, default=2, help="autoscaling: most replicas")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0,
                        help="KV cache size per replica on a CPU (GiB)")
    parser.add_argument("--load-requests", type=cli.positive_int, default=None,
                        help="self-test: send this many requests, report, shut down (benchmark mode)")
    parser.add_argument("--concurrency", type=cli.positive_int, default=16, help="self-test load concurrency")
    parser.add_argument("--max-tokens", type=cli.positive_int, default=64, help="self-test tokens per answer")
    parser.add_argument("--verbose", action="store_true", help="vLLM's and Ray's log lines on the console")
    args = parser.parse_args()
    llm_workload.apply_smoke_defaults(parser, args, load_requests=8, concurrency=4, max_tokens=8,
                                      max_model_len=256, max_replicas=1)
    if args.tensor_parallel_size > 1 and not args.use_gpu:
        parser.error("--tensor-parallel-size > 1 needs --use-gpu")
    if args.min_replicas > args.max_replicas:
        parser.error("--min-replicas must not exceed --max-replicas")
    llm_workload.require_vllm()
    port = args.port or (serve_client.free_port() if args.load_requests else 8000)
    if serve_client.port_in_use(port):
        cli.fail(f"port {port} is already in use on 127.0.0.1; stop the program using it or pass --port")
    base_url = f"http://127.0.0.1:{port}/v1"
    client = llm_workload.client_command(base_url, args)  # the self-test's client, found before the server starts
    model_name = models.resolve_llm(args.model)  # the packaged SmolLM2 folder, or a checked --model
    llm_workload.check_context(model_name, args.max_model_len)
    cli.prepare_output(args.output)

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init(log_to_driver=args.verbose)  # [5] start or join a Ray cluster (RAY_ADDRESS); engine logs to Ray's log files
    print(f"Loading {models.display_name(model_name)} ...", flush=True)
    try:
        start_server(port, model_name, args)
    except Exception as exc:  # e.g. weights vLLM cannot load (the model was checked above); see the log
        stop_server()  # what was deployed of it
        cli.fail(f"the LLM app did not start: {str(exc).strip().splitlines()[-1][:300]}")
    try:
        report = self_test.serve(args, base_url, llm_workload.ready_request(base_url, model_name), client)
    finally:
        stop_server()
    if report:
        llm_workload.write_self_test_result(args, report, model_name)


if __name__ == "__main__":
    main()
