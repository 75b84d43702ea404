"""Batch text generation with Ray Data and vLLM: a streaming pipeline that feeds prompts to vLLM engines.

Reads a JSONL prompt file (--prompts; by default one is generated from the seed) into a Ray Dataset; the
ray.data.llm processor applies the chat template, tokenizes, runs greedy generation on vLLM engine actors
(continuous batching, paged KV cache), detokenizes, and writes one row per prompt (id, prompt, completion,
token_ids, num_tokens) to the completions/ folder of Parquet files. Every completion is exactly --max-tokens
tokens long (min_tokens = max_tokens), so both sides of the pair generate the same amount of work;
--stop-at-eos ends each answer where the model ends it.

    python vllm_examples/ray_version/batch_generate.py --smoke-test          # 16 prompts x 16 tokens
    python vllm_examples/ray_version/batch_generate.py --num-prompts 256     # 256 prompts x 128 tokens

The model is the packaged SmolLM2-135M-Instruct (offline) unless --model names a folder or a hub id.

Needs vLLM (CPU: `pip install --no-deps -r requirements-vllm.txt`; GPU: see vllm_examples/README.md).
Twin: vllm_examples/baseline/batch_generate.py (diff the two files to see the Ray changes; the numbered
comments are explained in vllm_examples/README.md).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import ray
from ray.data.llm import build_processor, vLLMEngineProcessorConfig

from workshop import cli, llm_workload, models, ray_connect

MODULE, PAIR, SIDE = "vllm_examples", "batch_generate", "ray_version"
DTYPES = ("bfloat16", "float16", "float32")


def load_prompts(args) -> list[dict]:
    """The prompt rows: from --prompts, or generated from the seed (and saved next to the results)."""
    if args.prompts:
        return llm_workload.read_prompt_file(args.prompts)
    rows = llm_workload.make_prompts(args.num_prompts, args.seed)
    llm_workload.write_prompt_file(args.output / "prompts.jsonl", rows)
    return rows


def token_digest(token_ids: list[int]) -> str:
    """A short fingerprint of one completion's token ids: equal digests, equal tokens."""
    return hashlib.sha256(",".join(map(str, token_ids)).encode()).hexdigest()[:16]


def to_row(prompt_row: dict, token_ids: list[int], completion: str) -> dict:
    return {"id": prompt_row["id"], "prompt": prompt_row["prompt"], "completion": completion,
            "token_ids": token_ids, "num_tokens": len(token_ids)}


def build_generator(model_name: str, args):
    """The ray.data.llm processor: chat template -> tokenize -> vLLM engine -> detokenize, as Data stages."""
    light = {"num_cpus": 0.2}
    config = vLLMEngineProcessorConfig(  # [1] one config describes the engine, its resources and its batches
        model_source=model_name,
        engine_kwargs=llm_workload.engine_kwargs(args),  # vLLM's own arguments: dtype, lengths, KV cache size
        batch_size=args.batch_size,  # [2] rows per call into an engine, which batches continuously inside
        concurrency=args.engines,  # [3] engine replicas (data parallel), one model copy each
        # [4] what each engine worker reserves. Without a placement group Ray Data asks for a GPU per worker,
        # and on a CPU-only cluster the job would wait forever
        placement_group_config={"bundle_per_worker": {"GPU": 1, "CPU": 1} if args.use_gpu else {"CPU": 1}},
        # [5] the light CPU stages (and pre/postprocess below) take a fifth of a CPU each, so that an engine
        # always finds its CPU, also on a 2-CPU laptop; with 1 CPU each they could starve it and hang
        chat_template_stage=light, tokenize_stage=light, detokenize_stage=light,
        runtime_env={"env_vars": {"VLLM_LOGGING_LEVEL": "INFO" if args.verbose else "WARNING"}},  # vLLM's INFO lines
    )
    return build_processor(
        config,
        # [6] per row: the chat messages (templated by the processor) and this row's sampling parameters.
        # Greedy; min = max: exactly max_tokens new tokens (stop tokens are ignored until min_tokens).
        preprocess=lambda row: {
            "messages": llm_workload.chat_messages(row["prompt"]),
            "sampling_params": {"temperature": 0.0, "max_tokens": args.max_tokens,
                                "min_tokens": 0 if args.stop_at_eos else args.max_tokens},
        },
        postprocess=lambda row: to_row(
            {"id": row["id"], "prompt": row["messages"][0]["content"]},  # "prompt" is the templated text now
            [int(t) for t in row["generated_tokens"]], row["generated_text"],
        ),
        preprocess_map_kwargs=light, postprocess_map_kwargs=light,
    )


def generate_rows(prompt_rows: list[dict], model_name: str, args) -> ray.data.Dataset:
    """The whole job as one lazy Dataset: rows stream through the stages once it is consumed."""
    dataset = ray.data.from_items(prompt_rows)  # [7] a Dataset of prompt rows (big files: ray.data.read_json)
    generator = build_generator(model_name, args)
    return generator(dataset)


def main() -> None:
    parser = cli.make_parser(__doc__, module=MODULE, pair=PAIR, side=SIDE)
    parser.add_argument("--prompts", type=Path, default=None,
                        help="JSONL file, one {\"prompt\": ...} per line (default: generate --num-prompts)")
    parser.add_argument("--num-prompts", type=cli.positive_int, default=256, help="prompts to generate")
    parser.add_argument("--max-tokens", type=cli.positive_int, default=128,
                        help="tokens generated per prompt")
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="end each answer at end-of-sequence (up to --max-tokens), not at --max-tokens")
    parser.add_argument("--model", default=None, help=llm_workload.MODEL_HELP)
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights and compute dtype")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64,
                        help="rows per call into an engine")
    parser.add_argument("--use-gpu", action="store_true",
                        help="one GPU per engine worker (CUDA vllm package)")
    parser.add_argument("--engines", type=cli.positive_int, default=1,
                        help="vLLM engine replicas (data parallel)")
    parser.add_argument("--tensor-parallel-size", type=cli.positive_int, default=1,
                        help="GPUs that share one engine (tensor parallel; with --use-gpu)")
    parser.add_argument("--max-model-len", type=cli.positive_int, default=2048,
                        help="longest prompt + completion accepted (at most the model's context)")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0,
                        help="KV cache size per engine on a CPU (GiB)")
    args = parser.parse_args()
    llm_workload.apply_smoke_defaults(parser, args, num_prompts=16, max_tokens=16, max_model_len=256)
    if args.tensor_parallel_size > 1 and not args.use_gpu:
        parser.error("--tensor-parallel-size > 1 needs --use-gpu")
    llm_workload.require_vllm()
    model_name = models.resolve_llm(args.model)  # the packaged SmolLM2 folder, or a checked --model
    llm_workload.check_context(model_name, args.max_model_len)
    output = cli.prepare_output(args.output)
    prompt_rows = load_prompts(args)

    started = time.perf_counter()
    ray_connect.preflight()  # one clear line in seconds, not a traceback or a long wait, if the cluster is unreachable
    ray.init(log_to_driver=args.verbose)  # [8] start or join a Ray cluster (RAY_ADDRESS); engine logs to Ray's log files
    ray_connect.require_resources(1)
    if not args.verbose:  # Ray Data's INFO lines to its log file only (its progress bars stay)
        ray_connect.quiet_console("ray.data")
    startup = time.perf_counter() - started
    gpus = ray.cluster_resources().get("GPU", 0)
    if args.use_gpu and gpus < args.engines * args.tensor_parallel_size:
        cli.fail(f"--use-gpu: the Ray cluster has {gpus:g} GPUs, {args.engines * args.tensor_parallel_size} "
                 "needed; leave out --use-gpu to run on CPUs")

    print(f"{len(prompt_rows)} prompts x {args.max_tokens} tokens with {models.display_name(model_name)}",
          flush=True)
    with cli.Timer() as timer:
        try:
            results = generate_rows(prompt_rows, model_name, args).materialize()  # [9] run the pipeline once
        except Exception as exc:  # e.g. weights vLLM cannot load (the model was checked above); see the log
            cli.fail(f"the batch job failed: {str(exc).strip().splitlines()[-1][:300]} (the engine's own output: "
                     "rerun with --verbose, or see /tmp/ray/session_latest/logs)")
        path = output / "completions"
        results.write_parquet(str(path.resolve()), mode=ray.data.SaveMode.OVERWRITE)  # [10] one file per block
        rows = sorted(results.take_all(), key=lambda r: r["id"])  # small here; see README for large jobs
        if args.trace:  # [11] every task and actor call of this job, as a timeline for Perfetto
            ray.timeline(filename=str(args.trace))

    generated = sum(r["num_tokens"] for r in rows)
    for r in rows[:3]:
        print(f"  [{r['id']}] {r['prompt']!r} -> {r['completion'][:80]!r}")
    print(f"Generated {generated} tokens for {len(rows)} prompts in {timer.seconds:.1f} s "
          f"({generated / timer.seconds:.1f} tokens/s, engine start included); rows: {path}")
    result = cli.write_result(
        output, module=MODULE, pair=PAIR, side=SIDE, seconds=timer.seconds, smoke_test=args.smoke_test,
        answer={"prompts": len(rows), "max_tokens": args.max_tokens,
                "with_requested_length": sum(r["num_tokens"] == args.max_tokens for r in rows),
                "token_digests": [token_digest(list(r["token_ids"])) for r in rows]},
        model=model_name, generated_tokens=generated, tokens_per_second=round(generated / timer.seconds, 2),
        example={"input": rows[0]["prompt"], "output": rows[0]["completion"]},
        rows_path=str(path), startup_seconds=round(startup, 3),
    )
    print(f"Result: {result}")


if __name__ == "__main__":
    main()
