"""Batch generation with plain vLLM (`vllm.LLM.chat`, no Ray): the attribution row of the batch benchmark.

The same prompts, model, engine arguments and sampling as ray_version/batch_generate.py, the same rows and
result.json answer, in one process without Ray Data. Beside the pair it splits the speedup in two:
baseline -> plain vLLM is what vLLM brings (continuous batching, paged KV cache, its CPU kernels); plain vLLM
-> Ray Data + vLLM is what Ray adds or costs (a cluster and actors to start, separate CPU stages, replicas).
Not a workshop pair: llm_throughput.py runs it.

    python vllm_examples/benchmarks/plain_vllm.py --smoke-test
    python vllm_examples/benchmarks/plain_vllm.py --num-prompts 256 --max-tokens 128 --stop-at-eos
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workshop import cli, llm_workload, models



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
    parser.add_argument("--max-model-len", type=cli.positive_int, default=2048,
                        help="longest prompt + completion accepted (at most the model's context)")
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="KV cache size on a CPU (GiB)")
    parser.add_argument("--use-gpu", action="store_true", help="run on a CUDA GPU (CUDA vllm package)")
    parser.add_argument("--tensor-parallel-size", type=cli.positive_int, default=1,
                        help="GPUs that share the engine (with --use-gpu)")
    args = parser.parse_args()
    llm_workload.apply_smoke_defaults(parser, args, num_prompts=16, max_tokens=16, max_model_len=256)
    llm_workload.require_vllm()
    model_name = models.resolve_llm(args.model)
    llm_workload.check_context(model_name, args.max_model_len)
    output = cli.prepare_output(args.output)
    prompt_rows = (llm_workload.read_prompt_file(args.prompts) if args.prompts
                   else llm_workload.make_prompts(args.num_prompts, args.seed))

    from vllm import LLM, SamplingParams  # after the checks: importing vLLM takes a while

    print(f"{len(prompt_rows)} prompts x {args.max_tokens} tokens with {models.display_name(model_name)} "
          "(plain vLLM, no Ray)", flush=True)
    with cli.Timer() as timer:  # engine start included, as in the pair
        engine = LLM(model=model_name, **llm_workload.engine_kwargs(args))
        sampling = SamplingParams(temperature=0.0, max_tokens=args.max_tokens,
                                  min_tokens=0 if args.stop_at_eos else args.max_tokens)
        outputs = engine.chat([llm_workload.chat_messages(r["prompt"]) for r in prompt_rows], sampling,
                              use_tqdm=False)
        rows = [{"id": r["id"], "prompt": r["prompt"], "completion": o.outputs[0].text,
                 "token_ids": list(o.outputs[0].token_ids), "num_tokens": len(o.outputs[0].token_ids)}
                for r, o in zip(prompt_rows, outputs)]
        path = output / "completions.parquet"
        pd.DataFrame(rows).to_parquet(path, index=False)

    generated = sum(r["num_tokens"] for r in rows)
    print(f"Generated {generated} tokens for {len(rows)} prompts in {timer.seconds:.1f} s "
          f"({generated / timer.seconds:.1f} tokens/s, engine start included); rows: {path}")
    result = cli.write_result(
        args, seconds=timer.seconds,
        answer={"prompts": len(rows), "max_tokens": args.max_tokens,
                "with_requested_length": sum(r["num_tokens"] == args.max_tokens for r in rows),
                "token_ids": [[int(t) for t in r["token_ids"]] for r in rows]},
        model=model_name, generated_tokens=generated, tokens_per_second=round(generated / timer.seconds, 2),
        rows_path=str(path), example={"input": rows[0]["prompt"], "output": rows[0]["completion"]},
    )
    print(f"Result: {result}")


if __name__ == "__main__":
    main()
