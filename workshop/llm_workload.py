"""What vllm_examples' scripts share: the prompts, the prompt file, the model check, vLLM's engine arguments.

- `make_prompts(count, seed)`: the mix a real batch job has, for an instruct model: one-word answers
  (capitals, arithmetic, yes/no), short lists and longer paragraphs; the same rows for a seed.
- `write_prompt_file` / `read_prompt_file`: the JSONL prompt file (one `{"id": ..., "prompt": ...}` per line);
  reading it fails with one clear line on a missing, empty or malformed file.
- `check_context(model, max_model_len)`: one clear line and exit 1 when --max-model-len is longer than the
  model's own context (the model itself comes from `workshop.models.resolve_llm`: the packaged
  SmolLM2-135M-Instruct by default, offline). Checked before anything loads: an engine asked for more than
  the model's context fails inside its actor, and Ray Serve restarts that replica forever.
- `chat_messages(prompt)`: the OpenAI-style message list every side sends.
- `client_command`, `write_self_test_result`: the servers' self-test (workshop/self_test.py) with
  vllm_examples/openai_client.py, and the result.json it leaves.
- `require_vllm()`: one clear line and exit 1 where vLLM cannot be imported (macOS, Windows, no install).
- `engine_kwargs(args)`: vLLM's engine arguments from the common flags, for both Ray files and the benchmarks'
  plain vLLM and `vllm serve` rows (the same engine everywhere).
Nothing here imports Ray or vLLM.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

from workshop import cli, models, self_test

DTYPES = ("bfloat16", "float16", "float32")  # --dtype
MODEL_HELP = ("a model folder (what save_pretrained writes) or a hub id; default: the packaged "
              "SmolLM2-135M-Instruct, offline")

# Prompt kinds with their fillers: short factual answers, short lists and paragraphs, as in a real batch job.
CAPITALS = ["France", "Germany", "Italy", "Spain", "Japan", "Canada", "Egypt", "Brazil", "Kenya", "Norway",
            "Portugal", "Greece", "India", "Mexico", "Australia", "Poland", "Ireland", "Peru"]
YES_NO = ["Is the Sun a star?", "Can penguins fly?", "Is water made of hydrogen and oxygen?",
          "Is the Pacific the largest ocean on Earth?", "Do spiders have six legs?",
          "Is ice colder than steam?",
          "Is Mount Everest the highest mountain on Earth?", "Is a tomato a vegetable in botany?",
          "Does the Moon orbit the Earth?", "Is gold a metal?", "Do fish breathe with lungs?",
          "Is Python a programming language?"]
LISTS = ["fruits", "primary colours", "animals that live in the sea", "programming languages",
         "planets of the solar system", "musical instruments", "vegetables", "European rivers",
         "kinds of trees", "sports played with a ball"]
TOPICS = ["why the sky is blue", "how a bicycle works", "the water cycle", "how bees make honey",
          "why we have seasons", "what a computer program is", "how plants grow from seeds",
          "why it is good to sleep well", "how a rainbow forms", "what makes a good friend",
          "how trains run on rails", "why leaves change colour in autumn"]
KINDS = [  # (weight, template maker)
    (3, lambda rng: f"What is the capital of {rng.choice(CAPITALS)}? Answer in one word."),
    (2, lambda rng: f"What is {rng.randint(2, 20)} + {rng.randint(2, 20)}? Answer with a number only."),
    (1, lambda rng: f"What is {rng.randint(2, 9)} times {rng.randint(2, 9)}? Answer with a number only."),
    (2, lambda rng: f"{rng.choice(YES_NO)} Answer yes or no."),
    (2, lambda rng: f"List three {rng.choice(LISTS)}, one per line."),
    (2, lambda rng: f"Write a short paragraph about {rng.choice(TOPICS)}."),
    (1, lambda rng: f"Explain {rng.choice(TOPICS)} to a ten-year-old in a few sentences."),
]


def make_prompts(count: int, seed: int) -> list[dict]:
    """`count` prompt rows `{"id": i, "prompt": text}`, a fixed mix of short and long answers for a seed."""
    rng = random.Random(seed)
    weights, makers = zip(*KINDS)
    return [{"id": i, "prompt": rng.choices(makers, weights)[0](rng)} for i in range(count)]


def write_prompt_file(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_prompt_file(path: Path) -> list[dict]:
    """The rows of a JSONL prompt file, `id` = the prompt's position (0, 1, ...); exits on bad input."""
    if not path.is_file():
        cli.fail(f"prompt file {path} not found; pass an existing JSONL file to --prompts")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            cli.fail(f"{path}:{number}: not a JSON object; each line must look like {{\"prompt\": \"...\"}}")
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            cli.fail(f"{path}:{number}: no non-empty \"prompt\" string; "
                     "each line must look like {\"prompt\": \"...\"}")
        rows.append({"id": len(rows), "prompt": row["prompt"]})
    if not rows:
        cli.fail(f"prompt file {path} has no prompts; "
                 "add lines like {\"prompt\": \"Hello\"} or leave out --prompts")
    return rows


def chat_messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


# Where a Hugging Face config may give the context length (vLLM reads the same keys and takes the least)
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length",
                "max_seq_length", "seq_len")


def model_context(model: str) -> int | None:
    """The longest sequence (prompt + completion) the model was built for, per its config; None if unknown."""
    folder = Path(model)
    try:
        if folder.is_dir():
            config = json.loads((folder / "config.json").read_text())
        else:  # a hub id, already checked by models.resolve_llm (and its config.json cached)
            from huggingface_hub import hf_hub_download

            config = json.loads(Path(hf_hub_download(model, "config.json")).read_text())
    except (OSError, ValueError) as exc:
        cli.fail(f"cannot read the config of model {model}: "
                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    config = config.get("text_config", config)  # multimodal models keep the language model's config inside
    lengths = [config[key] for key in CONTEXT_KEYS if isinstance(config.get(key), int)]
    return min(lengths) if lengths else None


def check_context(model: str, max_model_len: int) -> None:
    """One line and exit 1 when --max-model-len is longer than the model's context (before anything loads)."""
    context = model_context(model)
    if context is not None and max_model_len > context:
        cli.fail(f"--max-model-len {max_model_len} is longer than the context of model {Path(model).name} "
                 f"({context} tokens, from its config.json); pass --max-model-len "
                 f"{context} or less")


def apply_smoke_defaults(parser, args, **sizes) -> None:
    """With --smoke-test, use these sizes for every option the user left at its default."""
    if args.smoke_test:
        for name, value in sizes.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)


def ready_request(base_url: str, model_name: str) -> tuple[str, dict]:
    """The servers' readiness check (workshop/self_test.py): one token of one completion, so that a server says
    it serves only once a request has gone through its model."""
    return f"{base_url}/completions", {"model": models.display_name(model_name), "prompt": "Hello", "max_tokens": 1}


def client_command(base_url: str, args) -> list[str]:
    """The servers' self-test client (workshop/self_test.py): openai_client.py's API check and load test (none
    without --load-requests). Called before the server starts: a missing client is one line at once."""
    if args.load_requests is None:
        return []
    return [str(self_test.find_client("openai_client.py")), "--base-url", base_url, "--check", "--load",
            "--requests", str(args.load_requests), "--concurrency", str(args.concurrency),
            "--max-tokens", str(args.max_tokens), "--seed", str(args.seed)]


def write_self_test_result(args, report: dict, model_name: str) -> None:
    """result.json of a server's self-test: the API check's statuses and texts and the load test's answers are
    what both servers must agree on; the load figures are details."""
    check, load = report["check"], report["load"]
    print(f"Self-test passed: {load['ok']} streaming requests in {load['seconds']:.2f} s, "
          f"{load['output_tokens_per_s']:.1f} output tokens/s, TTFT p50 {load['ttft_p50_ms']:.0f} ms, "
          f"latency p99 {load['latency_p99_ms']:.0f} ms")
    path = cli.write_result(
        args, seconds=load["seconds"],
        answer={"statuses": check["statuses"], "completion_tokens": check["completion_tokens"],
                "texts": check["texts"], "natural": check["natural"], "load_ok": load["ok"],
                "load_output_tokens": load["output_tokens"], "load_answers": load["answers"]},
        startup_seconds=report["startup_seconds"], self_test_seconds=report["self_test_seconds"],
        model=model_name, load={k: v for k, v in load.items() if k != "answers"},
        example={"input": check["prompt"], "output": check["texts"]["chat"]},
    )
    print(f"Result: {path}")


def vllm_installed() -> bool:
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):  # a broken or blocked install
        return False


def require_vllm() -> None:
    """Exit with one line that says how to install vLLM; the baselines need no vLLM."""
    if not vllm_installed():
        cli.fail("vLLM is not installed, and the Ray + vLLM scripts need it: on Linux x86-64 run "
                 "`pip install --no-deps -r requirements-vllm.txt` (CPU) or see vllm_examples/README.md "
                 "for the GPU package; on macOS/Windows run the baseline scripts, which need no vLLM")


def engine_kwargs(args) -> dict:
    """vLLM's own engine arguments (the benchmarks run plain vLLM with the same ones)."""
    return {
        "dtype": args.dtype, "max_model_len": args.max_model_len, "seed": args.seed,
        "tensor_parallel_size": args.tensor_parallel_size,  # GPUs that share one engine (one model copy)
        "enforce_eager": not args.use_gpu,  # CPU: no graph capture or compilation, a faster start
        # CPU: an explicit KV cache size (vLLM would otherwise take most of the RAM); a GPU sizes its own
        "kv_cache_memory_bytes": None if args.use_gpu else int(args.kv_cache_gib * 2**30),
    }
