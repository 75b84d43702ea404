"""Generic tests for every pair of every module: adding a pair's files and its pairs.toml entry is enough.

For each pair: both scripts answer --help, reject a bad flag with a usage error, and at smoke size the
baseline (run plainly) and the Ray version (copied out of the repository, run against the two-node test
cluster, with --trace) write results that agree under the pair's declared rule, and the Ray side's timeline is
a valid trace.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import base_env, last_line, lift_out, run
from tools import tour
from workshop import models

PAIRS = tour.discover()
SCRIPTS = [pair.script(side).relative_to(tour.ROOT) for pair in PAIRS for side in tour.SIDES]


def pair_id(pair: tour.Pair) -> str:
    return f"{pair.module}/{pair.name}"


def test_every_module_with_scripts_has_pairs():
    assert PAIRS, "no pairs discovered"
    assert {p.module for p in PAIRS} >= {"ray_core"}


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_numbered_comments_run_in_order_and_a_plain_ray_init(pair):
    """The Ray file's numbered comments ([1], [2], ...) first appear in order down the file, without gaps, and
    the file calls ray.init() as Ray's docs write it (not hidden in a helper), once."""
    text = pair.script("ray_version").read_text()
    comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
    first_seen = []
    for number in (int(n) for comment in comments for n in re.findall(r"\[(\d+)\]", comment)):
        if number not in first_seen:
            first_seen.append(number)
    assert first_seen == list(range(1, len(first_seen) + 1)), f"numbers in file order: {first_seen}"
    assert len(re.findall(r"^    ray\.init\(\)  # \[\d+\]", text, flags=re.M)) == 1, "one plain, numbered ray.init()"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_help(script):
    proc = run(script, "--help", timeout=50)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--smoke-test", "--seed", "--output"):
        assert flag in proc.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_bad_flag_is_a_usage_error(script):
    proc = run(script, "--seed", "not-a-number", timeout=50)
    assert proc.returncode == 2
    assert "invalid int value" in last_line(proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.ray_cluster
@pytest.mark.timeout(600)
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_pair_agrees_at_smoke_size(pair, ray_cluster, tmp_path):
    """Both sides at smoke size agree. The Ray side runs lifted out of the repository, as a learner copies it
    into a project: its module folder and workshop/ in a fresh folder (the converted model is shared through
    WORKSHOP_MODEL_CACHE instead of being converted again), against the two-node cluster."""
    results = {}
    lifted = lift_out(pair.module, tmp_path / "project")
    for side in tour.SIDES:
        env = ray_cluster.env(base_env()) if side == "ray_version" else base_env()
        out = tmp_path / side
        trace = tmp_path / "trace.json"
        args = [*pair.spec["smoke"], "--output", out, *(["--trace", trace] if side == "ray_version" else [])]
        if side == "ray_version":
            env["WORKSHOP_MODEL_CACHE"] = str(models.CACHE)
            proc = run(pair.script(side).relative_to(tour.ROOT), *args, env=env, timeout=540, cwd=lifted)
        else:
            proc = run(pair.script(side).relative_to(tour.ROOT), *args, env=env, timeout=540)
        assert proc.returncode == 0, f"{side} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        results[side] = json.loads((out / "result.json").read_text())
        assert results[side]["side"] == side and results[side]["pair"] == pair.name
        assert results[side]["seconds"] > 0
    # --trace: a Chrome-trace event list (what Perfetto and chrome://tracing load) with work from several workers
    events = json.loads(trace.read_text())
    workers = {e["tid"] for e in events if e.get("ph") == "X" and str(e.get("tid", "")).startswith("worker:")}
    assert len(workers) >= 2, f"the Ray timeline shows work from {len(workers)} worker process(es)"
    problems = tour.compare(results["baseline"]["answer"], results["ray_version"]["answer"], pair.spec["agree"])
    assert not problems, f"{pair_id(pair)} disagrees: {problems}"
