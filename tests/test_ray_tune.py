"""ray_tune specifics: a stopped experiment continues with --restore without redoing finished trials, a killed
trial resumes from its checkpoint, a configuration trains the same on both sides, bad input is one clear line.
(The pair test, tests/test_pairs.py, holds the two searches' best accuracies within pairs.toml's max_diff.)"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, base_env, last_line, read_result, run, run_and_kill, start_own_cluster
from tools import tour
from tools.tour import SIDES
from workshop import tuning

SCRIPT = "ray_tune/{side}/tune_mlp.py"



def trial_rows(experiment):
    """{trial folder name: [reported result rows]} as Tune wrote them to storage."""
    rows = {}
    for trial in sorted(experiment.glob("trial_*")):
        path = trial / "result.json"
        rows[trial.name] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return rows


def trial_state(experiment):
    """{trial folder name: (status, last saved epoch)} from the experiment state Tune saved."""
    [state_file] = experiment.glob("experiment_state-*.json")
    state = {}
    for trial_json, run_json in json.loads(state_file.read_text())["trial_data"]:
        trial, last = json.loads(trial_json), json.loads(run_json).get("last_result") or {}
        state[f"trial_{trial['trial_id']}"] = (trial["status"], last.get("training_iteration", 0))
    return state


@pytest.fixture(scope="module")
def baseline_smoke(smoke_run):
    """The baseline's smoke run, shared with the pair test."""
    [pair] = [p for p in tour.discover(["ray_tune"]) if p.name == "tune_mlp"]
    return smoke_run(pair, "baseline").result


def test_baseline_optuna_prunes_trials_that_fall_behind(baseline_smoke):
    details = baseline_smoke["details"]
    assert len(details["trials"]) == details["num_samples"] == 4
    assert details["trials_stopped_early"] >= 1 and details["epochs_run"] < details["epochs_budget"] == 16
    assert 0.6 < baseline_smoke["answer"]["best_val_accuracy"] < 0.95, "the search should find a model that learns"


@pytest.mark.ray_cluster
def test_a_configuration_trains_the_same_on_both_sides(smoke_run):
    """Each trial's model and data order are seeded (the seed, then (seed, epoch)), so a configuration that both
    searches try has the same per-epoch curve in a Tune trial as in an Optuna trial, for the epochs both ran; and
    the best trial comes from the same candidates."""
    [pair] = [p for p in tour.discover(["ray_tune"]) if p.name == "tune_mlp"]
    trials = {side: {json.dumps(t["config"], sort_keys=True): t["history"]
                     for t in smoke_run(pair, side).result["details"]["trials"]} for side in SIDES}
    both = trials["baseline"].keys() & trials["ray_version"].keys()
    assert both, "the seeded sampler proposes the same first configurations on both sides"
    for config in both:
        pairs_ = list(zip(trials["baseline"][config], trials["ray_version"][config]))
        assert pairs_ and all(a["epoch"] == b["epoch"] for a, b in pairs_)
        for key in ("train_loss", "val_loss", "val_accuracy"):  # float rounding aside (ray_train/pairs.toml)
            assert all(math.isclose(a[key], b[key], rel_tol=1e-4) for a, b in pairs_), f"{config}: {key} differs"
    # The same candidates: 4 trials are within Optuna's 10 seeded random draws, so both sides try the same
    # configurations. Where each stops a trial differs by design (ASHA decides as results arrive, the pruner in
    # trial order), so the best scores are compared only where they must agree: a side that ran the other's best
    # configuration at least to its best epoch saw that score, so its own best is no lower.
    assert trials["baseline"].keys() == trials["ray_version"].keys(), "the same candidate configurations"
    for side, other in (SIDES, SIDES[::-1]):
        result, other_best = smoke_run(pair, side).result, smoke_run(pair, other).result["answer"]["best_val_accuracy"]
        best, epoch = result["details"]["best_config"], result["details"]["best_epoch"]
        [config] = [c for c in trials[side] if {k: json.loads(c)[k] for k in best} == best]
        if len(trials[other][config]) >= epoch:
            assert other_best >= result["answer"]["best_val_accuracy"] - 1e-6, f"{other} missed {side}'s best"


def test_the_random_search_benchmark_runs_every_trial_to_the_end(tmp_path):
    proc = run("ray_tune/benchmarks/random_search.py", "--smoke-test", "--output", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    details = read_result(tmp_path)["details"]
    assert details["trials_stopped_early"] == 0
    assert details["epochs_run"] == details["epochs_budget"] == 16


# The search of ray_tune/README.md's fault lessons, as written there (4 trials of up to 8 epochs of 60,000 rows):
# trials of seconds, so that Ctrl-C and a kill land while trials run.
SLOW_TRIALS = ["--num-samples", "4", "--epochs", "8", "--train-rows", "60000"]


def interrupt_when(proc, ready, timeout=180):
    """Ctrl-C for the driver (SIGINT, as a terminal sends it) once ready() is true; then wait for it to exit."""
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return out, err


@pytest.mark.ray_cluster
@pytest.mark.timeout(400)
def test_stopped_experiment_restores_without_redoing_finished_trials(ray_cluster, tmp_path):
    """Ctrl-C once a trial has finished; --restore continues the same experiment without redoing it."""
    env = ray_cluster.env(base_env())
    script = SCRIPT.format(side="ray_version")
    experiment = tmp_path / "tune_mlp"

    progress = tmp_path / "stdout.txt"  # one line per finished trial: Ctrl-C after the first

    def a_trial_finished():
        return re.search(r"^Trial \S+ finished$", progress.read_text(errors="replace"), re.M)

    with open(progress, "w") as stdout:
        proc = subprocess.Popen([sys.executable, script, *SLOW_TRIALS, "--max-concurrent-trials", "2", "--output",
                                 str(tmp_path)], cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE,
                                text=True)
        _, err = interrupt_when(proc, a_trial_finished)
    out = progress.read_text(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    read_result(tmp_path)  # the stopped search still writes its result: the trials so far
    assert "Stopped early (Ctrl-C)" in out and "--restore" in out
    before = trial_rows(experiment)
    state = trial_state(experiment)  # what Tune saved at the stop: a trial is finished once it is TERMINATED
    finished = {name: rows for name, rows in before.items() if state[name][0] == "TERMINATED"}
    assert 1 <= len(finished) < 4, f"the stop should leave finished and unfinished trials: {state}"

    proc = run(script, *SLOW_TRIALS, "--max-concurrent-trials", "2", "--restore", "--output", tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = read_result(tmp_path)
    after = trial_rows(experiment)
    assert "Stopped early" not in proc.stdout and len(second["details"]["trials"]) == 4
    assert set(before) <= set(after) and len(after) == 4, "restore should continue the same 4 trials, not start new"
    for name, rows in finished.items():
        assert after[name] == rows, f"finished trial {name} was run again after restore"
    for name, rows in after.items():
        epochs = sorted({row["training_iteration"] for row in rows})
        assert epochs == list(range(1, len(epochs) + 1)), f"{name} skipped epochs: {epochs}"
    assert sum(len(rows) for rows in after.values()) > sum(len(rows) for rows in before.values())
    assert second["details"]["epochs_run"] == sum(max(r["training_iteration"] for r in rows) for rows in after.values())


@pytest.mark.timeout(400)
@pytest.mark.slow  # a cluster of its own and a search: about 45 s on 2 cores, over make test's budget
def test_killed_trial_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL the process of the running trial once it has saved its second epoch: Tune starts it again from its
    checkpoint (not from epoch 1), and the search completes. One trial at a time, so the one killed is known.
    On a cluster of its own. The trial actor's class name is `ImplicitFunc` or, in some runs (after the restore
    test in the same session, every time), the qualified `wrap_function.<locals>.ImplicitFunc`: the kill tool
    matches both."""
    experiment = tmp_path / "tune_mlp"
    cluster = start_own_cluster(head_cpus=2, worker_cpus=2)
    try:
        proc, killed = run_and_kill(SCRIPT.format(side="ray_version"), *SLOW_TRIALS, "--max-concurrent-trials",
                                    "1", "--output", tmp_path, kill=["trial"], env=cluster.env(base_env()),
                                    when_exists=experiment / "trial_*" / "checkpoint_000001")
    finally:
        cluster.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    details = read_result(tmp_path)["details"]
    assert "Stopped early" not in proc.stdout and len(details["trials"]) == 4
    # Tune counts iterations_since_restore from 1 again when it restarts a trial; training_iteration goes on
    restarted = {n: r for n, r in trial_rows(experiment).items()
                 if any(row["iterations_since_restore"] < row["training_iteration"] for row in r)}
    [(name, rows)] = restarted.items()
    first = next(row for row in rows if row["iterations_since_restore"] < row["training_iteration"])
    resumed_at = first["training_iteration"] - first["iterations_since_restore"]
    assert resumed_at >= 2, f"{name} should continue from a checkpoint of epoch 2 or later, not from scratch"
    assert all(row["epoch"] == row["training_iteration"] for row in rows), f"{name} started its epochs over"
    assert details["trials_stopped_early"] >= 1, "ASHA should stop at least one weak trial"


@pytest.mark.parametrize("text,message", [
    ("{}", "is empty"),
    ("[1, 2]", "is empty"),
    ("{oops", "not valid JSON"),
    ('{"lr": 0.01}', "missing ['width', 'weight_decay', 'batch_size']"),
    ('{"lr": {"type": "loguniform", "low": 0.1, "high": 0.001}, "width": 32, "weight_decay": 0, "batch_size": 64}',
     "lr has low 0.1 >= high 0.001"),
    ('{"lr": {"type": "normal", "low": 0, "high": 1}, "width": 32, "weight_decay": 0, "batch_size": 64}',
     '"type" one of'),
    ('{"lr": {"type": "loguniform", "low": 0, "high": 1}, "width": 32, "weight_decay": 0, "batch_size": 64}',
     "needs low > 0"),
    ('{"lr": 0.01, "width": {"type": "choice", "values": []}, "weight_decay": 0, "batch_size": 64}',
     "non-empty list"),
    ('{"lr": 0.01, "width": {"type": "uniform", "low": 8, "high": 64}, "weight_decay": 0, "batch_size": 64}',
     "whole number"),
])
def test_search_space_file_is_checked(tmp_path, text, message):
    path = tmp_path / "space.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=None) as error:
        tuning.load_search_space(path)
    assert message in str(error.value)


def test_a_valid_search_space_file_is_accepted(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{"lr": {"type": "loguniform", "low": 0.001, "high": 0.1}, "width": 32, "weight_decay": 0,'
                    ' "batch_size": {"type": "choice", "values": [32, 64]}}')
    assert tuning.load_search_space(path)["width"] == 32


@pytest.mark.parametrize("side", SIDES)
def test_invalid_search_space_is_a_usage_error(side, tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{"lr": {"type": "loguniform", "low": 0.1, "high": 0.001}, "width": 32, "weight_decay": 0,'
                    ' "batch_size": 64}')
    proc = run(SCRIPT.format(side=side), "--smoke-test", "--search-space", path, "--output", tmp_path / "out")
    assert proc.returncode == 2
    assert "lower bound must be smaller" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.parametrize("args,code,message", [
    (["--search-space", "no/such/space.json"], 1, "error: search space file no/such/space.json not found"),
    (["--restore"], 1, "error: no Tune experiment to restore in"),
])
def test_bad_tune_input_is_one_clear_line(tmp_path, args, code, message):
    proc = run(SCRIPT.format(side="ray_version"), "--smoke-test", *args, "--output", tmp_path / "empty")
    assert proc.returncode == code, proc.stderr[-2000:]
    assert message in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr
