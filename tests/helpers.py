"""What the tests share: running a script as a person does, the servers and clusters tests start (stopped
whatever ends the session), a script lifted out of the repository, and reading what a run wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools import cluster as local_cluster
from tools import tour

ROOT = Path(__file__).resolve().parent.parent


def read_result(folder: Path) -> dict:
    """The result.json a run wrote into its --output folder."""
    return json.loads((Path(folder) / "result.json").read_text())


# Process groups that tests start in sessions of their own (servers, clusters besides the session's): recorded
# while they run, with the pytest process that started them, so that this session stops them at its end whatever
# ended it (a failure, Ctrl-C, SIGTERM, a test's timeout), and a later session stops them if this one could not
# (SIGKILL, a lost machine). A session never touches the groups of another pytest that is still running.
GROUPS_STATE = Path(os.environ.get("WORKSHOP_TEST_GROUPS_STATE", ROOT / ".ray-cluster" / "test-groups.json"))


def _recorded_groups() -> dict[str, list[float]]:
    """{process group id: [its leader's start time, the pid of the pytest that started it]}."""
    try:
        return json.loads(GROUPS_STATE.read_text())
    except (OSError, ValueError):
        return {}


def _write_groups(groups: dict[str, list[float]]) -> None:
    if groups:
        GROUPS_STATE.parent.mkdir(parents=True, exist_ok=True)
        GROUPS_STATE.write_text(json.dumps(groups))
    else:
        GROUPS_STATE.unlink(missing_ok=True)


def record_group(pgid: int) -> None:
    """Remember a process group this session started (its leader's pid), when its leader started, and who we are."""
    import psutil


    try:
        started = psutil.Process(pgid).create_time()
    except psutil.Error:  # already gone
        return
    _write_groups({**_recorded_groups(), str(pgid): [started, os.getpid()]})


def reap_groups() -> None:
    """SIGKILL what is left of the recorded groups of this session and of sessions no longer running: each
    group's processes that started no earlier than its leader (a group id the system gave out again later is not
    ours, and neither is anything older)."""
    import psutil


    def ours(owner: int) -> bool:
        if owner == os.getpid():
            return True
        try:
            return "pytest" not in " ".join(psutil.Process(owner).cmdline())
        except psutil.Error:  # that session has ended
            return True


    recorded = _recorded_groups()
    reaped = {pgid: started for pgid, (started, owner) in recorded.items() if ours(int(owner))}
    for proc in psutil.process_iter(["create_time"]):
        try:
            started = reaped.get(str(os.getpgid(proc.pid)))
            if started is not None and proc.info["create_time"] >= started - 0.01:
                proc.kill()
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    _write_groups({k: v for k, v in recorded.items() if k not in reaped})


def spawn(command: list[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen in a session (and process group) of its own, recorded until the session ends."""
    proc = subprocess.Popen(command, start_new_session=True, **kwargs)
    record_group(proc.pid)
    return proc


class Terminal:
    """A server started as a person starts one in a terminal and stopped with Ctrl-C (SIGINT): in a process session
    of its own (SIGINT reaches the server only), recorded until the session ends, its output in `log_path`; `url`
    is where it answers."""


    def __init__(self, command: list[str], log_path: Path, env: dict[str, str], url: str) -> None:
        self.url, self.log_path, self.log = url, log_path, open(log_path, "w")
        self.proc = spawn(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)


    def wait_until(self, ready, timeout: float) -> None:
        """Until ready() is true; if the server exits or `timeout` seconds pass first, stop it and fail with its
        output."""
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"the server never came up:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)


    def printed(self, text: str) -> bool:
        return text in self.log_path.read_text(errors="replace")


    def stop(self) -> int:
        """Ctrl-C, then the exit status (SIGKILL for the whole group if it is not gone within a minute)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def start_own_cluster(**sizes) -> local_cluster.LocalCluster:
    """A Ray cluster besides the session's, for a test that needs one to itself; its node groups are recorded."""
    cluster = local_cluster.start(**sizes)
    for pgid in cluster.process_groups:
        record_group(pgid)
    return cluster


def checkout() -> dict:
    """Which commit ran, and whether tracked files had changes not committed (then no commit stands for the run)."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""


    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None, "clean_checkout": bool(commit) and not git("status", "--porcelain",
                                                                                 "--untracked-files=no")}


def write_report(name: str, report: dict) -> None:
    """A report of this checkout's run in reports/ (tools/docs.py's `record` copies them into docs/reports/)."""
    (ROOT / "reports").mkdir(exist_ok=True)
    (ROOT / "reports" / name).write_text(json.dumps(report, indent=2) + "\n")


@dataclass
class SmokeRun:
    """One side of one pair, run once at smoke size: its process, its output folder and result."""
    proc: subprocess.CompletedProcess
    output: Path
    script: Path  # the copy that ran, in a project folder of its own


    @property
    def result(self) -> dict:
        assert self.proc.returncode == 0, f"failed:\n{self.proc.stdout[-2000:]}\n{self.proc.stderr[-3000:]}"
        return read_result(self.output)


def base_env() -> dict[str, str]:
    """The environment of a person's terminal: no Ray cluster address, no stray test settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240,
        cwd: Path = ROOT):
    """Run a workshop script from the repository root (or cwd); return the CompletedProcess (text output)."""
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        cwd=cwd, env=env or base_env(), capture_output=True, text=True, timeout=timeout,
    )


CLIENTS = {"text_classifier_server": "load_test.py", "openai_server": "openai_client.py"}  # a server's self-test


def lift_out(script: Path, folder: Path) -> Path:
    """What a learner copies into their own project (the README's "Use a script in your own project"): the script
    and workshop/ side by side, and a server's client one folder up, nothing else of this repository. The
    folders keep the repository's names (MODULE/SIDE/NAME.py), which name the result. Returns the copied script."""
    import shutil


    script = ROOT / script
    target = folder / script.parent.parent.name / script.parent.name
    target.mkdir(parents=True)
    shutil.copy2(script, target / script.name)
    shutil.copytree(ROOT / "workshop", target / "workshop", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if script.stem in CLIENTS:
        shutil.copy2(script.parent.parent / CLIENTS[script.stem], target.parent / CLIENTS[script.stem])
    return target / script.name


def copied_helpers_imported(script: Path) -> bool:
    """Whether the run imported the workshop/ copied next to the script (Python leaves its bytecode there)."""
    return any((script.parent / "workshop" / "__pycache__").glob("cli.*.pyc"))


def load_script(path: str | Path):
    """Import a script of this repository (a path from its root) as a module, without running main."""
    return tour.load_script(ROOT / path)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# Every attempt of one task, by task id: [[attempt number, state], ...] (the state API keeps finished jobs' tasks).
TASK_ATTEMPTS = r"""
import json, sys
from ray.util import state
rows = state.list_tasks(filters=[("task_id", "=", sys.argv[1])], detail=True, raise_on_missing_output=False)
print(json.dumps(sorted([t.attempt_number, t.state] for t in rows)))
"""


def run_and_kill(script: str, *args: str, kill: list[str], env: dict[str, str], timeout: float = 300,
                 when_exists: str | Path | None = None, when_printed: str | None = None):
    """Run a Ray script and, while it works, SIGKILL one of its processes from outside with
    `python -m tools.kill_process KIND NAME` (started at once; it waits until such a process is running, with
    when_exists until a file matching that glob exists, with when_printed until the script has printed that
    text, on stdout or stderr). Returns the script's CompletedProcess and what the tool killed."""
    import time


    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"run_and_kill_{os.getpid()}"
    go = Path(f"{log}.go")
    go.unlink(missing_ok=True)
    if when_printed:
        when_exists = go
    extra = ["--when-exists", str(when_exists)] if when_exists else []
    with open(f"{log}.out", "w+") as out, open(f"{log}.err", "w+") as err:  # files: a pipe could fill and block
        # --job-id newest: only this script's processes (the state query of one job stays fast on a test
        # cluster that has run hundreds of jobs' actors)
        killer = subprocess.Popen([sys.executable, "-m", "tools.kill_process", *kill, "--wait", "180", *extra,
                                   "--job-id", "newest"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=ROOT, env=env, stdout=out,
                                stderr=err, text=True)
        try:
            deadline = time.monotonic() + 240
            while when_printed and proc.poll() is None and time.monotonic() < deadline:
                if any(when_printed in Path(f.name).read_text(errors="replace") for f in (out, err)):
                    go.touch()  # the tool, already waiting, kills within a fraction of a second
                    break
                time.sleep(0.05)
            killed, kill_err = killer.communicate(timeout=240)
            proc.wait(timeout=timeout)
        finally:
            for p in (killer, proc):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    assert killer.returncode == 0, f"nothing was killed: {kill_err[-2000:]}\n{done.stderr[-2000:]}"
    return done, json.loads(last_line(killed))


ACTOR_RESTARTS = r"""
import json, sys
from ray.util import state
rows = state.list_actors(filters=[("actor_id", "=", sys.argv[1])], detail=True, raise_on_missing_output=False)
actor = rows[0] if rows else None
print(json.dumps({"num_restarts": actor.num_restarts, "state": actor.state} if actor else None))
"""


def actor_restarts(actor_id: str, env: dict[str, str]) -> dict | None:
    """The state API's record of an actor (also after its job ended): its restarts and its state."""
    proc = subprocess.run([sys.executable, "-c", ACTOR_RESTARTS, actor_id], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(last_line(proc.stdout))


def task_attempts(task_id: str, env: dict[str, str]) -> list[list]:
    proc = subprocess.run([sys.executable, "-c", TASK_ATTEMPTS, task_id], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(last_line(proc.stdout))


# The worker processes that ran a job's tasks and actor calls, by the state API (it keeps finished jobs' tasks); the
# job is the driver whose command line holds argv[1] (a script's path, unique to one run).
JOB_WORKERS = r"""
import json, sys
from ray.util import state
jobs = [j.job_id for j in state.list_jobs(raise_on_missing_output=False) if sys.argv[1] in (j.entrypoint or "")]
tasks = [t for job in jobs for t in state.list_tasks(filters=[("job_id", "=", job)], detail=True, limit=10_000,
                                                     raise_on_missing_output=False)]
print(json.dumps({"jobs": len(jobs), "workers": sorted({t.worker_id for t in tasks
                                                         if t.worker_id and t.type != "DRIVER_TASK"})}))
"""


def job_workers(script: Path, env: dict[str, str]) -> dict:
    """{"jobs": how many driver jobs ran `script`, "workers": the worker processes that ran their tasks}."""
    proc = subprocess.run([sys.executable, "-c", JOB_WORKERS, str(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(last_line(proc.stdout))


def ray_timeline(env: dict[str, str], folder: Path) -> list[dict]:
    """What `ray timeline` (docs/trace.md) writes for the cluster in `env`: a Chrome-trace event list."""
    ray_cli = Path(sys.executable).parent / "ray"
    proc = subprocess.run([str(ray_cli), "timeline"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = re.search(r"Trace file written to (\S+)", proc.stdout + proc.stderr)
    assert written, f"ray timeline named no file:\n{proc.stderr[-2000:]}"
    return json.loads(Path(written.group(1)).read_text())
