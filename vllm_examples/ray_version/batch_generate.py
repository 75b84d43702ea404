"""Batch text generation with Ray Data and vLLM: prompts stream through vLLM engines (continuous batching).

Reads a JSONL prompt file (--prompts; by default one is generated from the seed), applies the model's chat
template, generates greedily and writes one row per prompt (id, prompt, completion, token_ids, num_tokens)
as Parquet. Every completion is exactly --max-tokens tokens long (end-of-sequence is ignored until then), so
both sides of the pair generate the same amount of work; --stop-at-eos ends each answer where the model ends
it. The model is the packaged SmolLM2-135M-Instruct (offline) unless --model names a folder or a hub id.

Diff it with its twin to see the Ray changes (the numbered comments are explained in vllm_examples/README.md):

    diff -u vllm_examples/baseline/batch_generate.py vllm_examples/ray_version/batch_generate.py
Needs vLLM (CPU: `pip install --no-deps -r requirements-vllm.txt`; GPU: see vllm_examples/README.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import ray
from ray.data.llm import build_processor, vLLMEngineProcessorConfig

from workshop import cli, llm_workload, models, ray_connect

def load_prompts(args) -> list[dict]:
    """The prompt rows: from --prompts, or generated from the seed (and saved next to the results)."""
    if args.prompts:
        return llm_workload.read_prompt_file(args.prompts)
    rows = llm_workload.make_prompts(args.num_prompts, args.seed)
    llm_workload.write_prompt_file(args.output / "prompts.jsonl", rows)
    return rows


def to_row(prompt_row: dict, token_ids: list[int], completion: str) -> dict:
    return {"id": prompt_row["id"], "prompt": prompt_row["prompt"], "completion": completion,
            "token_ids": token_ids, "num_tokens": len(token_ids)}


def build_generator(model_name: str, args):
    """The ray.data.llm processor: chat template -> tokenize -> vLLM engine -> detokenize, as Data stages."""
    light = {"num_cpus": 0.2}
    config = vLLMEngineProcessorConfig(  # [1] one config describes the engine, its resources and its batches
        model_source=model_name,
        engine_kwargs=llm_workload.engine_kwargs(args),  # vLLM's own arguments
        batch_size=args.batch_size,  # [1] rows per call into an engine, which batches continuously inside
        concurrency=args.engines,  # [1] engine replicas (data parallel), one model copy each
        # [2] what each engine worker reserves; without it, Ray Data asks for a GPU per worker (forever, on CPUs)
        placement_group_config={"bundle_per_worker": {"GPU": 1, "CPU": 1} if args.use_gpu else {"CPU": 1}},
        # [2] the light CPU stages take a fifth of a CPU each, so an engine always finds its CPU (2-CPU laptop)
        chat_template_stage=light, tokenize_stage=light, detokenize_stage=light,
    )
    return build_processor(
        config,
        # [3] per row: the chat messages and sampling parameters (greedy; min = max: exactly max_tokens)
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
    dataset = ray.data.from_items(prompt_rows)  # [4] a Dataset of prompt rows (big files: ray.data.read_json)
    generator = build_generator(model_name, args)
    return generator(dataset)


def main() -> None:
    parser = cli.make_parser(__doc__, __file__)
    parser.add_argument("--prompts", type=Path, default=None,
                        help="JSONL file, one {\"prompt\": ...} per line (default: generate --num-prompts)")
    parser.add_argument("--num-prompts", type=cli.positive_int, default=256, help="prompts to generate")
    parser.add_argument("--max-tokens", type=cli.positive_int, default=128,
                        help="tokens generated per prompt")
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="end each answer at end-of-sequence (up to --max-tokens), not at --max-tokens")
    parser.add_argument("--model", default=None, help=llm_workload.MODEL_HELP)
    parser.add_argument("--dtype", choices=llm_workload.DTYPES, default="float32", help="weights and compute dtype")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64, help="rows per call into an engine")
    parser.add_argument("--max-model-len", type=cli.positive_int, default=2048,
                        help="longest prompt + completion accepted (at most the model's context)")
    parser.add_argument("--use-gpu", action="store_true", help="run on a CUDA GPU")
    parser.add_argument("--engines", type=cli.positive_int, default=1, help="vLLM engines (data parallel)")
    parser.add_argument("--tensor-parallel-size", type=cli.positive_int, default=1, help="GPUs per engine")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="KV cache per engine on a CPU (GiB)")
    parser.add_argument("--verbose", action="store_true", help="vLLM's and Ray's log lines on the console")
    args = parser.parse_args()
    llm_workload.apply_smoke_defaults(parser, args, num_prompts=16, max_tokens=16, max_model_len=256)
    if args.tensor_parallel_size > 1 and not args.use_gpu:
        parser.error("--tensor-parallel-size > 1 needs --use-gpu")
    llm_workload.require_vllm()
    model_name = models.resolve_llm(args.model)  # the packaged SmolLM2 folder, or a checked --model
    llm_workload.check_context(model_name, args.max_model_len)
    output = cli.prepare_output(args.output)
    prompt_rows = load_prompts(args)

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init(log_to_driver=args.verbose)  # [5] start or join a Ray cluster (RAY_ADDRESS); engine logs to Ray's log files
    logging.getLogger("ray.data").setLevel(logging.INFO if args.verbose else logging.WARNING)  # its plans, timings

    print(f"{len(prompt_rows)} prompts x {args.max_tokens} tokens with {models.display_name(model_name)}",
          flush=True)
    with cli.Timer() as timer:
        try:
            results = generate_rows(prompt_rows, model_name, args).materialize()  # [6] run the pipeline once
        except Exception as exc:  # e.g. weights vLLM cannot load (the model was checked above); see the log
            cli.fail(f"the batch job failed: {str(exc).strip().splitlines()[-1][:300]} (the engine's own output: "
                     "rerun with --verbose, or see /tmp/ray/session_latest/logs)")
        path = output / "completions"
        results.write_parquet(str(path.resolve()), mode=ray.data.SaveMode.OVERWRITE)  # [6] one file per block
        rows = sorted(results.take_all(), key=lambda r: r["id"])  # small here; see README for large jobs

    generated = sum(r["num_tokens"] for r in rows)
    for r in rows[:3]:
        print(f"  [{r['id']}] {r['prompt']!r} -> {r['completion'][:80]!r}")
    print(f"Generated {generated} tokens for {len(rows)} prompts in {timer.seconds:.1f} s "
          f"({generated / timer.seconds:.1f} tokens/s, model load included); rows: {path}")
    result = cli.write_result(
        args, seconds=timer.seconds,
        answer={"prompts": len(rows), "max_tokens": args.max_tokens,
                "with_requested_length": sum(r["num_tokens"] == args.max_tokens for r in rows),
                "token_ids": [[int(t) for t in r["token_ids"]] for r in rows]},
        model=model_name, generated_tokens=generated, tokens_per_second=round(generated / timer.seconds, 2),
        example={"input": rows[0]["prompt"], "output": rows[0]["completion"]},
        rows_path=str(path),
    )
    print(f"Result: {result}")


if __name__ == "__main__":
    main()
