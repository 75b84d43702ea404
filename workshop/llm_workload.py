"""What both sides of vllm_examples share: the prompts, the prompt file, the models and vLLM's settings.

- `make_prompts(count, seed)`: varied one-line instructions about a made-up world, the same for a seed.
- `write_prompt_file` / `read_prompt_file`: the JSONL prompt file (one `{"id": ..., "prompt": ...}` per line);
  reading it fails with one clear line on a missing, empty or malformed file.
- `resolve_model(...)`: the hub model id for a real run; the tiny local Llama for `--smoke-test`
  (workshop/tiny_llm.py) or a 28M-parameter random Llama for benchmarks, both built locally (no hub access).
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

# A small public instruct model: about 2 GB in float32, usable on a laptop CPU. Needs the hub on first use.
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


def build_random_llama_28m(folder: Path, seed: int = 0) -> Path:
    """A random-init Llama of about 28M parameters (8 layers, hidden 512, 8 heads of 64) with the tiny model's
    tokenizer: big enough that generation is compute-bound, so tokens/s comparisons mean something, and
    built locally, so benchmarks need no hub access. Like the tiny model it knows nothing."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    # the tokenizer and chat template (and a tiny model, replaced below)
    tiny_llm.build_tiny_llama(folder, seed=seed)
    (folder / tiny_llm.MARKER).unlink()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    (folder / tiny_llm.MARKER).write_text(json.dumps({"seed": seed, "model": "random-llama-28m"}) + "\n")
    return folder


# Models built locally (no hub): --model NAME, and --smoke-test uses "tiny-llama".
LOCAL_MODELS = {
    "tiny-llama": lambda folder, seed: tiny_llm.build_tiny_llama(folder, seed=seed),  # 2 layers, hidden 64
    "random-llama-28m": build_random_llama_28m,
}


MODEL_HELP = (f"hub id, local folder, or one of {sorted(LOCAL_MODELS)} (built here, no download); "
              f"default {DEFAULT_MODEL}, with --smoke-test tiny-llama")


def resolve_model(model: str | None, smoke_test: bool, output: Path, seed: int = 0) -> str:
    """The model to load: a hub id or a folder as given; a LOCAL_MODELS name, built into `output/NAME` (an
    absolute path, so that Ray workers find it too); by default DEFAULT_MODEL, with --smoke-test "tiny-llama".
    """
    model = model or ("tiny-llama" if smoke_test else DEFAULT_MODEL)
    if model not in LOCAL_MODELS:
        return model
    folder = output.resolve() / model
    if not tiny_llm.is_built(folder):
        LOCAL_MODELS[model](folder, seed)
    return str(folder)


def apply_smoke_defaults(parser, args, **sizes) -> None:
    """With --smoke-test, use these sizes for every option the user left at its default."""
    if args.smoke_test:
        for name, value in sizes.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)


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
        "max_model_len": args.max_model_len,  # the longest prompt + completion (one sequence's KV cache)
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
                 "`pip install --no-deps -r requirements-vllm.txt` (CPU) or see vllm_examples/README.md "
                 "for the GPU package; on macOS/Windows run the baseline scripts, which need no vLLM")
