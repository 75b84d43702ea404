"""pytest's hooks and the session's fixtures: one real two-node Ray cluster, each pair's smoke run (once per
session), and a Python that has the pinned packages but not this repository. The helpers the tests import are
in tests/helpers.py."""

from __future__ import annotations

import importlib.util
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from helpers import ROOT, SmokeRun, base_env, checkout, lift_out, reap_groups, write_report
from tools import cluster as local_cluster

_STARTED = pytest.StashKey[float]()


def pytest_configure(config):
    """SIGTERM (a CI timeout, `kill`) stops the run as Ctrl-C does: pytest then tears the session's fixtures down,
    the test cluster among them, instead of leaving its processes running."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


REPORTS = {"not slow": "test.json", "slow and not bench": "test-slow.json"}  # make test, make test-slow


def pytest_sessionstart(session):
    session.config.stash[_STARTED] = time.monotonic()
    reap_groups()  # what an earlier session started and could not stop (it was killed)


def pytest_sessionfinish(session, exitstatus):
    """Stop what tests started and left running. A whole `make test` or `make test-slow` run leaves
    reports/test.json or test-slow.json: the counts, the seconds, the Python and the machine (the README's
    figures come from such reports)."""
    reap_groups()
    config = session.config
    name = REPORTS.get(config.option.markexpr)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    option = config.option
    whole = (config.args_source == pytest.Config.ArgsSource.TESTPATHS and not option.keyword and not option.collectonly
             and not getattr(option, "lf", False) and not getattr(option, "maxfail", 0))
    if name is None or not whole or reporter is None:
        return
    from tools.tour import machine_description

    counts = {key: len(reporter.stats.get(key, [])) for key in ("passed", "failed", "error", "skipped")}
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "python": platform.python_version(),
        "command": "make test" if name == "test.json" else "make test-slow",
        "exit_status": int(exitstatus),
        **counts,
        **checkout(),
        "seconds": round(time.monotonic() - config.stash[_STARTED], 1),
    }
    write_report(name, report)


def pytest_collection_modifyitems(config, items):
    """Where vLLM's CPU build cannot be installed (macOS, Linux on ARM), vllm_examples' tests are skipped, with
    the reason in pytest's summary. The test that hides vLLM on purpose still runs."""
    if importlib.util.find_spec("vllm") is not None:
        return
    from tools.tour import NO_VLLM

    skip = pytest.mark.skip(reason=f"vllm_examples: {NO_VLLM}")
    for item in items:
        if "vllm_examples" in item.nodeid and "without_vllm" not in item.name:
            item.add_marker(skip)


# Where the session's test cluster is recorded while it runs, so that a later session can remove it if this one
# was killed (SIGKILL, a lost machine) before it could stop it.
CLUSTER_STATE = Path(os.environ.get("WORKSHOP_TEST_CLUSTER_STATE", ROOT / ".ray-cluster" / "test-cluster.json"))


@pytest.fixture(scope="session")
def ray_cluster():
    """Head + worker node, token authentication on; stopped at the end, also after a failure, Ctrl-C or SIGTERM.
    A cluster an earlier session left behind (recorded in CLUSTER_STATE, and still ours) is stopped first."""
    if CLUSTER_STATE.exists():
        try:
            stale = local_cluster.LocalCluster.load(CLUSTER_STATE)
        except (ValueError, KeyError, OSError):
            stale = None
        if stale is not None and stale.alive():
            stale.stop()
        CLUSTER_STATE.unlink(missing_ok=True)
    # the head node alone where a test runs test sessions of its own (tests/test_cluster.py, nothing left behind)
    cluster = local_cluster.start(worker_cpus=None if os.environ.get("WORKSHOP_TEST_CLUSTER_HEAD_ONLY") else 4)
    try:
        cluster.save(CLUSTER_STATE)
        yield cluster
    finally:
        cluster.stop()
        CLUSTER_STATE.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def smoke_run(request, tmp_path_factory):
    """`smoke_run(pair, side)`: the pair side's smoke run (the pairs.toml `smoke` arguments), once per session.

    The generic pair test and the module tests that look closer at one side's answer share it instead of each
    running the script again. Both sides run lifted out of the repository, as a learner copies them into a
    project (`lift_out`), with a Python that has the pinned packages but not this repository
    (`project_python`); the Ray side against the two-node test cluster."""
    from workshop import models

    runs: dict[tuple[str, str, str], SmokeRun] = {}

    def get(pair, side: str) -> SmokeRun:
        key = (pair.module, pair.name, side)
        if key not in runs:
            folder = tmp_path_factory.mktemp(f"{pair.name}_{side}")
            out = folder / "out"
            args = [*pair.spec["smoke"], "--output", out]
            script = pair.script(side).relative_to(ROOT)
            copy = lift_out(script, folder / "project")
            env = base_env()
            env["WORKSHOP_MODEL_CACHE"] = str(models.CACHE)  # the converted SmolLM2 (python -m workshop.models)
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # copied_helpers_imported looks for the bytecode
            if side == "ray_version":
                env = request.getfixturevalue("ray_cluster").env(env)
            python = request.getfixturevalue("project_python")
            proc = subprocess.run([python, str(copy), *map(str, args)], cwd=copy.parent.parent.parent, env=env,
                                  capture_output=True, text=True, timeout=540)
            runs[key] = SmokeRun(proc, out, copy)
        return runs[key]

    return get


@pytest.fixture(scope="session")
def project_python(tmp_path_factory) -> str:
    """A Python with this repository's pinned packages but not the repository itself (no editable `workshop`):
    a venv whose site-packages lists the test venv's site-packages in a .pth file, so that the packages import
    and .pth files in there (the editable install's among them) are not run."""
    import sysconfig

    folder = tmp_path_factory.mktemp("project_venv")
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(folder)],
                   check=True, capture_output=True)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "pinned_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(python), "-c", "import ray, torch, workshop"], cwd=folder, capture_output=True,
                           text=True)
    assert "No module named 'workshop'" in probe.stderr, f"the project Python must not see workshop: {probe.stderr}"
    return str(python)


