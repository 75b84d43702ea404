"""ray_train specifics: --resume continues a run exactly, Ray Train survives a killed worker process and ends
where an uninterrupted run ends, the LoRA fine-tune teaches SmolLM2 a one-word answer on both sides and its saved
adapter loads onto the base model, bad input is one clear line."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from helpers import ROOT, base_env, last_line, read_result, run
from tools import tour
from tools.tour import SIDES

PAIRS = {pair.name: pair for pair in tour.discover() if pair.module == "ray_train"}

CLASSIFIER = "ray_train/{side}/train_classifier.py"
FINETUNE = "ray_train/{side}/finetune_lora.py"
FINETUNE_MARGIN = 0.3  # workshop/lora_data.py MARGIN: the least rise in the held-out share of exact answers



@pytest.fixture(scope="module")
def baseline_classifier(smoke_run):
    """One uninterrupted single-process smoke run (the one the pair test compares): its result and its folder."""
    run_ = smoke_run(PAIRS["train_classifier"], "baseline")
    return run_.result, run_.output


@pytest.mark.timeout(120)
def test_baseline_learns_and_resume_reproduces_the_uninterrupted_run(baseline_classifier, tmp_path):
    full, out = baseline_classifier
    assert full["details"]["loss_fell"] is True
    assert full["details"]["train_loss"] < 0.5 * full["details"]["first_train_loss"]
    assert full["answer"]["val_accuracy"] > 0.85, "the MLP should learn the generated problem"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"epoch_{e:03d}" for e in range(1, 7)]
    proc = run(CLASSIFIER.format(side="baseline"), "--smoke-test", "--resume", out / "checkpoints" / "epoch_003",
               "--output", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resumed from" in proc.stdout
    resumed = read_result(tmp_path)
    # the checkpoint holds model and optimizer state, and each epoch's shuffle depends only on (seed, epoch), so the
    # resumed epochs are the uninterrupted run's: equal but for float rounding (torch's CPU kernels need not sum in
    # the same order in another process), within the pair's rule
    assert not tour.compare(full["answer"], resumed["answer"], PAIRS["train_classifier"].spec["agree"])
    assert resumed["answer"]["train_losses"][:3] == full["answer"]["train_losses"][:3]  # carried in the checkpoint
    assert math.isclose(resumed["details"]["val_loss"], full["details"]["val_loss"], rel_tol=1e-4)


@pytest.mark.ray_cluster
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_one_ray_worker_trains_the_baselines_order_and_resumes_it(ray_cluster, baseline_classifier, tmp_path):
    """--workers 1, as ray_train/README.md offers it: no DistributedSampler is needed for one worker, yet the epoch
    order must still be the baseline's (seed, epoch) order, uninterrupted and after --resume from a checkpoint."""
    full, out = baseline_classifier
    rule = PAIRS["train_classifier"].spec["agree"]
    env = ray_cluster.env(base_env())
    proc = run(CLASSIFIER.format(side="ray_version"), "--smoke-test", "--workers", "1", "--output",
               tmp_path / "one", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not tour.compare(full["answer"], read_result(tmp_path / "one")["answer"], rule)
    # a checkpoint of either side resumes either side: the baseline's after epoch 3, one Ray worker for 4-6
    proc = run(CLASSIFIER.format(side="ray_version"), "--smoke-test", "--workers", "1", "--resume",
               out / "checkpoints" / "epoch_003", "--output", tmp_path / "resumed", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = read_result(tmp_path / "resumed")
    assert not tour.compare(full["answer"], resumed["answer"], rule)
    assert resumed["answer"]["train_losses"][:3] == full["answer"]["train_losses"][:3]  # carried in the checkpoint


# The smoke size with more epochs (about 0.4 s each on 2 cores): the kill lands mid-run, after the first checkpoint.
LONGER = ["--rows", "16000", "--hidden", "64", "--epochs", "16"]


@pytest.mark.timeout(600)
@pytest.mark.slow
@pytest.mark.bench  # a benchmark script's run (about 100 s on 2 cores): make test-bench, not CI
def test_ray_train_recovers_from_a_killed_worker_process(tmp_path):
    """ray_train/benchmarks/recovery_time.py at its smallest size (this is its run in the suite): a training
    worker SIGKILLed from outside once epoch 2 has been printed (its checkpoint is in). Ray Train restarts the
    worker group from the latest checkpoint, and the run ends where the single-process baseline ends."""
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    proc = subprocess.run([sys.executable, "ray_train/benchmarks/recovery_time.py", "--smoke-test", "--output",
                           str(runs), "--reports", str(reports)], cwd=ROOT, env=base_env(), capture_output=True,
                          text=True, timeout=560)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((reports / "ray_train_recovery_time_smoke.json").read_text())
    assert report["recovery_seconds"] > 0 and 1 <= report["resumed_from_epoch"] < 16 and report["table"]
    # rank 0 logs it (Ray Train sends a worker's log lines to the driver's stderr)
    assert "Resumed from the latest checkpoint after a worker failure" in (runs / "killed_worker" / "stdout.txt"
                                                                          ).read_text()
    assert report["args"] == LONGER
    reference = run(CLASSIFIER.format(side="baseline"), *LONGER, "--output", tmp_path / "baseline")
    assert reference.returncode == 0, reference.stderr[-2000:]
    result, expected = read_result(runs / "killed_worker"), read_result(tmp_path / "baseline")
    assert result["answer"]["epochs"] == 16 and result["details"]["loss_fell"] is True
    # the restart continues from the checkpoint's model, optimizer and epoch: the same run as the baseline's
    assert not tour.compare(expected["answer"], result["answer"], PAIRS["train_classifier"].spec["agree"])
    assert result["details"]["resumed_from"] is None  # recovered by Ray Train itself, not through --resume


@pytest.mark.parametrize("side", SIDES)
def test_resume_from_a_missing_or_unreadable_checkpoint_is_one_clear_line(side, tmp_path):
    proc = run(CLASSIFIER.format(side=side), "--smoke-test", "--resume", tmp_path / "nope", "--output", tmp_path / "o")
    assert proc.returncode == 1
    assert "no such checkpoint folder" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.pt").write_text("not a checkpoint")
    proc = run(CLASSIFIER.format(side=side), "--smoke-test", "--resume", broken, "--output", tmp_path / "o")
    assert proc.returncode == 1
    assert "cannot read checkpoint.pt" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "result.json").exists()


# ---- finetune_lora: SmolLM2 learns to answer a review's sentiment in exactly one word ----
@pytest.fixture(scope="module")
def finetune_baseline(smoke_run):
    """The baseline's smoke run, shared with the pair test: its result and its output folder."""
    run_ = smoke_run(PAIRS["finetune_lora"], "baseline")
    return run_.result, run_.output


@pytest.fixture(scope="module")
def finetune_ray(smoke_run):
    """The Ray side's smoke run on the test cluster (lifted out of the repository), shared with the pair test."""
    run_ = smoke_run(PAIRS["finetune_lora"], "ray_version")
    return run_.result, run_.output


def assert_learned_the_one_word_answer(result: dict, folder) -> None:
    answer, details = result["answer"], result["details"]
    # the base model answers with a sentence, the adapter with the word: the share of exact answers must rise
    # by at least lora_data.MARGIN (0.3), and the flag the pair rule compares must say so
    assert answer["exact_share_after"] >= answer["exact_share_before"] + FINETUNE_MARGIN, answer
    assert answer["rose_by_margin"] is True
    assert answer["exact_share_before"] <= 0.25, "the base model should not already answer in one word"
    assert details["answer_before"] != details["shown_label"]
    assert details["answer_after"] == details["shown_label"], details["answer_after"]
    assert answer["train_losses"][-1] < 0.5 * answer["train_losses"][0]
    adapter = folder / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert not (adapter / "model.safetensors").exists(), "only the adapter is saved, not the base model"


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_finetune_baseline_teaches_the_one_word_answer(finetune_baseline):
    assert_learned_the_one_word_answer(*finetune_baseline)


@pytest.mark.ray_cluster
@pytest.mark.timeout(600)
@pytest.mark.slow
def test_finetune_ray_version_teaches_it_too_and_agrees_with_the_baseline(finetune_ray, finetune_baseline):
    result, folder = finetune_ray
    assert_learned_the_one_word_answer(result, folder)
    assert result["details"]["workers"] == 2 and result["details"]["steps"] == finetune_baseline[0]["details"]["steps"]
    # the same base model and prompts: the same answers before training, whichever side measured them
    assert result["answer"]["exact_share_before"] == finetune_baseline[0]["answer"]["exact_share_before"]
    assert (folder / "ray_results" / "finetune_lora").is_dir(), "the checkpoints live in Ray's storage"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("side", ["baseline", pytest.param("ray_version", marks=pytest.mark.ray_cluster)])
@pytest.mark.slow
def test_the_saved_adapter_loads_onto_the_base_model_and_answers_in_one_word(side, request):
    """Independent of the scripts: peft puts the saved adapter on a fresh base model, which then answers reviews
    it has never seen (another seed) with exactly the right word."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workshop import lora_data, models

    folder = request.getfixturevalue(f"finetune_{'ray' if side == 'ray_version' else 'baseline'}")[1]
    base = models.resolve_llm(None)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      folder / "adapter").eval()
    examples = lora_data.make_examples(16, seed=7, held_out=True)
    texts = [tokenizer.apply_chat_template(lora_data.messages(e), add_generation_prompt=True, tokenize=False)
             for e in examples]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answers = [a.strip() for a in tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)]
    assert all(a in lora_data.LABELS for a in answers), answers
    right = sum(a == e["response"] for a, e in zip(answers, examples))
    assert right >= 14, list(zip(answers, (e["response"] for e in examples)))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("side", SIDES)
def test_a_bad_model_is_one_clear_line(side, tmp_path):
    # a missing folder for the Ray version (it must fail before ray.init(), without a cluster), a folder that is
    # not a model for the baseline: both come from models.resolve_llm
    bad = tmp_path / "no_such_model"
    if side == "baseline":
        bad.mkdir()
    proc = run(FINETUNE.format(side=side), "--model", bad, "--output", tmp_path / "o", timeout=100)
    assert proc.returncode == 1
    expected = "no config.json" if side == "baseline" else "no such folder"
    assert f"--model {bad}: not a model folder ({expected}" in last_line(proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "result.json").exists()


@pytest.mark.ray_cluster
@pytest.mark.timeout(180)
def test_more_workers_or_gpus_than_the_cluster_has_fail_fast(ray_cluster, tmp_path):
    # finetune_lora.py makes the same check before its TorchTrainer
    proc = run(CLASSIFIER.format(side="ray_version"), "--smoke-test", "--workers", "64", "--batch-size", "64",
               "--output", tmp_path, env=ray_cluster.env(base_env()), timeout=80)
    assert proc.returncode == 1
    assert "--workers 64 needs 64 CPUs and the Ray cluster has 8" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "result.json").exists()
    proc = run(CLASSIFIER.format(side="ray_version"), "--smoke-test", "--use-gpu", "--output", tmp_path,
               env=ray_cluster.env(base_env()), timeout=80)
    assert proc.returncode == 1
    assert "--workers 2 needs 2 GPUs and the Ray cluster has 0" in last_line(proc.stderr)


@pytest.mark.timeout(30)
def test_batch_not_divisible_by_workers_is_a_usage_error():
    proc = run(CLASSIFIER.format(side="ray_version"), "--workers", "3", "--batch-size", "16")
    assert proc.returncode == 2
    assert "must be divisible by --workers 3" in last_line(proc.stderr)
