"""Batch text generation with Hugging Face transformers: generate() on static padded batches sorted by length.

Reads a JSONL prompt file (--prompts; by default one is generated from the seed), applies the model's chat
template, generates greedily and writes one row per prompt (id, prompt, completion, token_ids, num_tokens)
as Parquet. Every completion is exactly --max-tokens tokens long (end-of-sequence is ignored until then), so
both sides of the pair generate the same amount of work; --stop-at-eos ends each answer where the model ends
it. The model is the packaged SmolLM2-135M-Instruct (offline) unless --model names a folder or a hub id.

Diff it with its twin to see the Ray changes (the numbered comments are explained in vllm_examples/README.md):

    diff -u vllm_examples/baseline/batch_generate.py vllm_examples/ray_version/batch_generate.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from workshop import cli, llm_workload, models


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


def until_end(token_ids: list[int], end_ids: set[int]) -> list[int]:
    """The new tokens up to the first end-of-sequence token, included (generate() pads finished rows)."""
    ends = [n for n, token in enumerate(token_ids) if token in end_ids]
    return token_ids[:ends[0] + 1] if ends else token_ids


def generate_rows(prompt_rows: list[dict], model_name: str, args) -> list[dict]:
    """Greedy generate() on static padded batches of similar length; rows come back in the input order."""
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    tokenizer.padding_side = "left"  # decoder-only: pad on the left, so every row goes on from its last token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if args.use_gpu else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_name, dtype=args.dtype).to(device).eval()
    eos = model.generation_config.eos_token_id
    config = GenerationConfig(  # greedy; min = max: exactly max_tokens new tokens (EOS is masked until then)
        do_sample=False, max_new_tokens=args.max_tokens,
        min_new_tokens=0 if args.stop_at_eos else args.max_tokens,
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
    )
    end_ids = set(eos if isinstance(eos, list) else [eos])
    texts = [tokenizer.apply_chat_template(llm_workload.chat_messages(r["prompt"]), tokenize=False,
                                           add_generation_prompt=True) for r in prompt_rows]
    lengths = [len(tokenizer(text)["input_ids"]) for text in texts]
    if max(lengths) + args.max_tokens > args.max_model_len:
        longest = lengths.index(max(lengths))
        cli.fail(f"prompt {prompt_rows[longest]['id']} is {max(lengths)} tokens; with --max-tokens "
                 f"{args.max_tokens} it does not fit --max-model-len {args.max_model_len}")
    # Sorting by length keeps the padding in each static batch small.
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    token_ids: dict[int, list[int]] = {}
    for start in tqdm(range(0, len(order), args.batch_size), desc="generate() batches", unit="batch"):
        batch = order[start:start + args.batch_size]
        encoded = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            output = model.generate(**encoded, generation_config=config)
        for i, ids in zip(batch, output[:, encoded["input_ids"].shape[1]:].tolist()):
            token_ids[i] = until_end(ids, end_ids)
    completions = tokenizer.batch_decode([token_ids[i] for i in range(len(texts))], skip_special_tokens=True)
    return [to_row(r, token_ids[i], completions[i]) for i, r in enumerate(prompt_rows)]


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
    parser.add_argument("--batch-size", type=cli.positive_int, default=16, help="prompts per generate() call")
    parser.add_argument("--max-model-len", type=cli.positive_int, default=2048,
                        help="longest prompt + completion accepted (at most the model's context)")
    parser.add_argument("--use-gpu", action="store_true", help="run on a CUDA GPU")
    args = parser.parse_args()
    llm_workload.apply_smoke_defaults(parser, args, num_prompts=16, max_tokens=16, max_model_len=256)
    if args.use_gpu and not torch.cuda.is_available():
        cli.fail("--use-gpu: PyTorch sees no CUDA GPU here; leave out --use-gpu to run on the CPU")
    model_name = models.resolve_llm(args.model)  # the packaged SmolLM2 folder, or a checked --model
    llm_workload.check_context(model_name, args.max_model_len)
    output = cli.prepare_output(args.output)
    prompt_rows = load_prompts(args)

    print(f"{len(prompt_rows)} prompts x {args.max_tokens} tokens with {models.display_name(model_name)}",
          flush=True)
    with cli.Timer() as timer:
        try:
            rows = generate_rows(prompt_rows, model_name, args)
        except (OSError, ValueError) as exc:  # e.g. weights that do not match the config
            cli.fail(f"cannot load model {model_name}: {str(exc).strip().splitlines()[0][:300]}")
        path = output / "completions.parquet"
        pd.DataFrame(rows).to_parquet(path, index=False)

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
