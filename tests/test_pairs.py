"""Generic tests for every pair of every module: adding a pair's files and its pairs.toml entry is enough.

For each pair: both scripts answer --help, reject a bad flag with a usage error, and at smoke size the
baseline (run plainly) and the Ray version (copied out of the repository, run against the two-node test
cluster) write results that agree under the pair's declared rule, the Ray side's work spread over several of
Ray's worker processes.
"""

from __future__ import annotations

import json
import re

import pytest

from helpers import base_env, copied_helpers_imported, job_workers, last_line, run
from tools import tour

PAIRS = tour.discover()
# Pairs whose smoke runs load an LLM (minutes on 2 cores): over make test's 10-minute budget, run by make test-slow
SLOW_PAIRS = {"finetune_lora", "batch_generate", "openai_server"}
# Serve's replicas belong to the job that first started Serve on the cluster, not to the script that deployed them
SERVE_PAIRS = {"text_classifier_server", "openai_server"}
SCRIPTS = [pair.script(side).relative_to(tour.ROOT) for pair in PAIRS for side in tour.SIDES]


def pair_id(pair: tour.Pair) -> str:
    return f"{pair.module}/{pair.name}"


def test_every_module_with_scripts_has_pairs():
    assert PAIRS, "no pairs discovered"
    assert {p.module for p in PAIRS} >= {"ray_core"}


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_numbered_comments_run_in_order_and_a_plain_ray_init(pair):
    """The Ray file's numbered comments ([1], [2], ...) first appear in order down the file, without gaps, and
    the file calls ray.init() as Ray's docs write it (not hidden in a helper), once: no address, no resources; the
    arguments allowed are log_to_driver (a chatty library's workers may log to Ray's files only) and a
    ray.LoggingConfig log level (Ray's own INFO lines off the console)."""
    text = pair.script("ray_version").read_text()
    comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
    first_seen = []
    for number in (int(n) for comment in comments for n in re.findall(r"\[(\d+)\]", comment)):
        if number not in first_seen:
            first_seen.append(number)
    assert first_seen == list(range(1, len(first_seen) + 1)), f"numbers in file order: {first_seen}"
    plain = r'^    ray\.init\((?:log_to_driver=[\w.]+|logging_config=ray\.LoggingConfig\(log_level="\w+"\))?\)  # \[\d+\]'
    assert len(re.findall(plain, text, flags=re.M)) == 1, "one plain, numbered ray.init()"


@pytest.fixture(scope="session")
def cli_checks(tmp_path_factory):
    """`--help` and a bad flag for every script, all in one process (tests/cli_probe.py)."""
    target = tmp_path_factory.mktemp("cli") / "checks.json"
    proc = run("tests/cli_probe.py", target, *SCRIPTS, timeout=280)
    assert proc.returncode == 0 and target.exists(), proc.stderr[-3000:]
    return json.loads(target.read_text())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_help(script, cli_checks):
    check = cli_checks[str(script)]["help"]
    assert check["code"] == 0, check["stderr"][-3000:]
    for flag in ("--smoke-test", "--seed", "--output"):
        assert flag in check["stdout"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_bad_flag_is_a_usage_error(script, cli_checks):
    check = cli_checks[str(script)]["bad_flag"]
    assert check["code"] == 2, check["stderr"][-3000:]
    assert "invalid int value" in last_line(check["stderr"])
    assert "Traceback" not in check["stderr"]


@pytest.mark.ray_cluster
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("pair", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAIRS else p
                                  for p in PAIRS], ids=pair_id)
def test_pair_agrees_at_smoke_size(pair, smoke_run, request):
    """Both sides at smoke size agree. Each runs lifted out of the repository, as a learner copies it into a
    project, with a Python that does not have this repository; the Ray side against the two-node cluster (see
    the smoke_run fixture); module tests reuse these runs."""
    results = {}
    for side in tour.SIDES:
        results[side] = smoke_run(pair, side).result
        assert copied_helpers_imported(smoke_run(pair, side).script), "the copied workshop/ was not the one used"
        assert results[side]["seconds"] > 0
    if pair.name not in SERVE_PAIRS:
        # the state API's record of the run: its tasks and actor calls ran in several worker processes
        ran = job_workers(smoke_run(pair, "ray_version").script, request.getfixturevalue("ray_cluster").env(base_env()))
        assert ran["jobs"] == 1 and len(ran["workers"]) >= 2, f"the Ray run's work: {ran}"
    problems = tour.compare(results["baseline"]["answer"], results["ray_version"]["answer"], pair.spec["agree"])
    assert not problems, f"{pair_id(pair)} disagrees: {problems}"
