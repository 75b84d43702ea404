"""ray_train specifics: --resume continues a run exactly, Ray Train survives a killed worker process and ends
where an uninterrupted run ends, the fine-tuned adapter loads and generates, bad input is one clear line."""

from __future__ import annotations

import json

import pytest

from conftest import base_env, last_line, run

CLASSIFIER = "ray_train/{side}/train_classifier.py"
FINETUNE = "ray_train/{side}/finetune_lora.py"
SIDES = ("baseline", "ray_version")
ACCURACY_TOLERANCE = 0.02  # the same tolerance as pairs.toml: multi-worker training is not bit-identical


def read_result(folder):
    return json.loads((folder / "result.json").read_text())


@pytest.fixture(scope="module")
def baseline_classifier(tmp_path_factory):
    """One uninterrupted single-process smoke run: its result and its output folder."""
    out = tmp_path_factory.mktemp("classifier_baseline")
    proc = run(CLASSIFIER.format(side="baseline"), "--smoke-test", "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_result(out), out


@pytest.mark.timeout(120)
def test_baseline_learns_and_resume_reproduces_the_uninterrupted_run(baseline_classifier, tmp_path):
    full, out = baseline_classifier
    assert full["answer"]["loss_fell"] is True
    assert full["details"]["train_loss"] < 0.5 * full["details"]["first_train_loss"]
    assert full["answer"]["val_accuracy"] > 0.85, "the MLP should learn the generated problem"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"epoch_{e:03d}" for e in range(1, 7)]
    proc = run(CLASSIFIER.format(side="baseline"), "--smoke-test", "--resume", out / "checkpoints" / "epoch_003",
               "--output", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resumed from" in proc.stdout
    resumed = read_result(tmp_path)
    # the checkpoint holds model and optimizer state, and each epoch's shuffle depends only on (seed, epoch)
    assert resumed["answer"] == full["answer"]
    assert resumed["details"]["val_loss"] == full["details"]["val_loss"]


@pytest.mark.ray_cluster
@pytest.mark.timeout(400)
def test_ray_train_recovers_from_a_killed_worker_process(ray_cluster, tmp_path, baseline_classifier):
    proc = run(CLASSIFIER.format(side="ray_version"), "--smoke-test", "--inject-failure", "--output", tmp_path,
               env=ray_cluster.env(base_env()), timeout=380)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = read_result(tmp_path)
    details = result["details"]
    assert details["injected_failure"] is True, "the worker was never killed"
    assert "killing worker process" in proc.stdout + proc.stderr
    # the kill happens halfway through epoch 4 of 6: the latest checkpoint is epoch 3's, or an earlier one if the
    # controller had not yet taken in the last report(s) when the worker died; never a fresh start
    assert 1 <= details["resumed_from_epoch"] <= 3
    assert 0 < details["recovery_seconds"] < 300
    assert f"resumed from the epoch {details['resumed_from_epoch']} checkpoint" in proc.stdout
    assert result["answer"]["epochs"] == 6 and result["answer"]["loss_fell"] is True
    expected = baseline_classifier[0]["answer"]["val_accuracy"]
    assert abs(result["answer"]["val_accuracy"] - expected) <= ACCURACY_TOLERANCE
    assert details["resumed_from"] is None  # recovered by Ray Train itself, not through --resume


@pytest.mark.timeout(60)
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


@pytest.mark.timeout(240)
def test_finetune_baseline_lowers_the_loss_and_its_adapter_reloads(tmp_path):
    """The generic pair test checks that both sides agree; this checks what they agree on is true."""
    proc = run(FINETUNE.format(side="baseline"), "--smoke-test", "--output", tmp_path, timeout=220)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(tmp_path)
    details = result["details"]
    assert result["answer"] == {"loss_fell": True, "adapter_generates": True}
    assert details["held_out_loss_after"] < details["held_out_loss_before"] - 0.3
    assert details["train_losses"][-1] < details["train_losses"][0]
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    assert not (adapter / "model.safetensors").exists(), "only the adapter is saved, not the base model"
    assert details["answer_after"] != details["answer_before"]


@pytest.mark.timeout(60)
def test_a_missing_model_folder_is_one_clear_line(tmp_path):
    # the Ray version: it must fail before ray.init(), without a cluster (the baseline shares resolve_model)
    proc = run(FINETUNE.format(side="ray_version"), "--model", tmp_path / "no_such_model", "--output", tmp_path / "o")
    assert proc.returncode == 1
    assert "no such model folder" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.ray_cluster
@pytest.mark.timeout(180)
def test_more_workers_or_gpus_than_the_cluster_has_fail_fast(ray_cluster, tmp_path):
    # finetune_lora.py runs the same check_cluster_fits() before its TorchTrainer
    proc = run(CLASSIFIER.format(side="ray_version"), "--smoke-test", "--workers", "64", "--batch-size", "64",
               "--output", tmp_path, env=ray_cluster.env(base_env()), timeout=80)
    assert proc.returncode == 1
    assert "--workers 64: the Ray cluster has only 8 CPUs" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "result.json").exists()
    proc = run(CLASSIFIER.format(side="ray_version"), "--smoke-test", "--use-gpu", "--output", tmp_path,
               env=ray_cluster.env(base_env()), timeout=80)
    assert proc.returncode == 1
    assert "--use-gpu: this Ray cluster has no GPUs" in last_line(proc.stderr)


@pytest.mark.timeout(30)
def test_batch_not_divisible_by_workers_is_a_usage_error():
    proc = run(CLASSIFIER.format(side="ray_version"), "--workers", "3", "--batch-size", "16")
    assert proc.returncode == 2
    assert "must be divisible by --workers 3" in last_line(proc.stderr)
