"""ray_core specifics: the AUC is right, faults are survived with the same answer, tasks use both nodes,
bad input is one clear line."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from helpers import (actor_restarts, base_env, job_workers, last_line, load_script, ray_timeline, read_result, run,
                     run_and_kill, task_attempts)
from tools import tour
from tools.tour import SIDES

BOOTSTRAP = "ray_core/{side}/bootstrap_auc.py"
PARAMETER_SERVER = "ray_core/{side}/parameter_server.py"


def brute_force_auc(scores, labels):
    """P(score of a positive > score of a negative), ties counted as one half."""
    pos, neg = scores[labels], scores[~labels]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("side", SIDES)
def test_roc_auc_matches_the_definition_with_ties(side):
    roc_auc = load_script(BOOTSTRAP.format(side=side)).roc_auc
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.integers(0, 5, size=60).astype(float)  # few distinct values: many ties
        labels = rng.random(60) < 0.4
        assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)



@pytest.fixture(scope="module")
def baseline_answers(smoke_run):
    """Smoke answers of both baselines (plain Python, no Ray), shared with the pair tests."""
    pairs = {pair.name: pair for pair in tour.discover(["ray_core"])}
    return {name: smoke_run(pairs[pair], "baseline").result["answer"]
            for name, pair in (("bootstrap", "bootstrap_auc"), ("ps", "parameter_server"))}


def test_pool_and_sequential_agree(tmp_path, baseline_answers):
    proc = run("ray_core/benchmarks/bootstrap_sequential.py", "--smoke-test", "--output", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_result(tmp_path)["answer"] == baseline_answers["bootstrap"]


# Four replicates of 12M rows each: every task computes for seconds, so the kill lands while one runs.
LONG_TASKS = ["--rows", "20000", "--replicates", "4", "--sample-size", "12000000"]


@pytest.mark.ray_cluster
@pytest.mark.timeout(400)
def test_bootstrap_survives_a_killed_worker(ray_cluster, tmp_path):
    """SIGKILL the worker process of a running bootstrap task from outside: Ray runs the task again (a second
    attempt, in the state API) and the answer is the baseline's, to the last digit."""
    env = ray_cluster.env(base_env())
    proc, killed = run_and_kill(BOOTSTRAP.format(side="ray_version"), *LONG_TASKS, "--output", tmp_path / "ray",
                                kill=["task", "bootstrap_task"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert task_attempts(killed["id"], env) == [[0, "FAILED"], [1, "FINISHED"]]
    reference = run(BOOTSTRAP.format(side="baseline"), *LONG_TASKS, "--output", tmp_path / "baseline")
    assert reference.returncode == 0, reference.stderr
    assert read_result(tmp_path / "ray")["answer"] == read_result(tmp_path / "baseline")["answer"]
    # `ray timeline` (docs/trace.md) holds this run's tasks, from several worker processes (the state API says
    # which processes ran this job: the one whose command line names this test's output folder)
    ran = job_workers(tmp_path / "ray", env)
    events = ray_timeline(env, tmp_path)
    workers = {e["tid"] for e in events if e.get("ph") == "X" and e.get("cat") == "task::bootstrap_task"
               and e["tid"].removeprefix("worker:") in ran["workers"]}
    assert len(workers) >= 2, f"this run's task events come from {len(workers)} worker(s)"


@pytest.mark.ray_cluster
@pytest.mark.timeout(300)
def test_parameter_server_survives_a_killed_actor(ray_cluster, tmp_path):
    """SIGKILL a data worker actor's process from outside: Ray restarts it (its __init__ rebuilds the shard from
    the seed), re-sends the call in flight, and the weights are the baseline's exactly."""
    # the smoke size with 3000 steps (--smoke-test would set 30): about 10 s of steps (300 a second on 2 idle
    # cores), so the kill lands mid-training
    args = ["--rows-per-worker", "5000", "--dim", "16", "--batch-size", "256", "--steps", "3000"]
    env = ray_cluster.env(base_env())
    proc, killed = run_and_kill(PARAMETER_SERVER.format(side="ray_version"), *args, "--output", tmp_path / "ray",
                                kill=["actor", "DataWorker"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert killed["name"] == "DataWorker"  # killed while ALIVE: after its __init__ had finished
    record = actor_restarts(killed["id"], env)
    assert record and record["num_restarts"] == 1, f"Ray should have restarted that actor once: {record} {killed}"
    reference = run(PARAMETER_SERVER.format(side="baseline"), *args, "--output", tmp_path / "baseline")
    assert reference.returncode == 0, reference.stderr
    result = read_result(tmp_path / "ray")
    assert result["answer"] == read_result(tmp_path / "baseline")["answer"]
    assert result["answer"]["accuracy"] > 0.9, "training should learn the separable problem"


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("script,args,message", [
    (BOOTSTRAP, ["--rows", "0"], "expected a number >= 1"),
    (BOOTSTRAP, ["--replicates", "ten"], "expected a whole number"),
    (PARAMETER_SERVER, ["--batch-size", "500", "--rows-per-worker", "100"], "cannot exceed"),
])
def test_bad_numbers_are_usage_errors(side, script, args, message):
    proc = run(script.format(side=side), *args)
    assert proc.returncode == 2
    assert message in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("side", SIDES)
def test_unwritable_output_is_one_clear_line(side, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run(BOOTSTRAP.format(side=side), "--smoke-test", "--output", blocker / "out")
    assert proc.returncode == 1
    assert last_line(proc.stderr).startswith("error: cannot create output folder")
    assert "Traceback" not in proc.stderr


def test_rerun_overwrites_the_result(tmp_path):
    for seed in ("1", "2"):
        proc = run(BOOTSTRAP.format(side="baseline"), "--smoke-test", "--seed", seed, "--output", tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert read_result(tmp_path)["argv"][-3:] == ["2", "--output", str(tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


