"""Kill one process of a running Ray job from outside, as an out-of-memory kill or a crash would: SIGKILL.

The fault-tolerance lessons need a process to die in the middle of the work. Instead of crash code inside
the taught scripts, this tool finds the process through Ray's state API (the same data `ray list tasks` /
`ray list actors` show) and sends it SIGKILL: no exception, no cleanup, nothing the script can catch.

    python -m tools.kill_process task bootstrap_task     # the worker running a task of that name
    python -m tools.kill_process actor DataWorker        # the process of a live actor of that class
    python -m tools.kill_process train-worker            # a Ray Train worker (the highest rank found)
    python -m tools.kill_process trial                   # the process running a Ray Tune trial
    python -m tools.kill_process replica Classifier      # a Serve replica of that deployment

It waits (--wait seconds) until such a process runs (and, with --when-exists, until a file matching a glob
pattern exists: "kill once the first checkpoint is written"), kills one, and prints one JSON line saying what it
killed. Run it on the machine where the process runs (SIGKILL is local): on the workshop's one-machine
clusters, that is this machine. It talks to the cluster named by RAY_ADDRESS (with its token settings), or
to the Ray started on this machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sys
import time

KINDS = ("task", "actor", "train-worker", "trial", "replica")


def _state():
    from ray.util import state

    return state


def _address() -> str | None:
    return os.environ.get("RAY_ADDRESS") or None


def candidates(kind: str, name: str | None, job_id: str | None = None) -> list[dict]:
    """Live processes of that kind: [{"pid", "node_id", "id", "name"}], the ones to kill first, first."""
    state = _state()
    common = {"address": _address(), "limit": 10_000, "raise_on_missing_output": False, "timeout": 10}
    filters = [("job_id", "=", job_id)] if job_id else []
    if kind == "task":
        rows = state.list_tasks(filters=filters + [("name", "=", name), ("state", "=", "RUNNING")], detail=True,
                                **common)
        return [{"pid": t.worker_pid, "node_id": t.node_id, "id": t.task_id, "name": t.name,
                 "attempt": t.attempt_number} for t in rows if t.worker_pid]
    actors = state.list_actors(filters=filters + [("state", "=", "ALIVE")], detail=True, **common)
    match = {
        "actor": lambda a: a.class_name == name,
        "train-worker": lambda a: a.class_name == "RayTrainWorker",
        # a function trainable's actor: "ImplicitFunc", or its qualified "wrap_function.<locals>.ImplicitFunc"
        "trial": lambda a: a.class_name.rsplit(".", 1)[-1].startswith(("ImplicitFunc", "_Inner"))
        or a.class_name.endswith("Trainable"),
        "replica": lambda a: a.class_name.startswith("ServeReplica:") and
        (name is None or a.class_name.split(":")[-1] == name),
    }[kind]
    found = [a for a in actors if match(a) and a.pid]
    found.sort(key=lambda a: a.name or "", reverse=True)  # Train: worker names end in the rank; highest first
    return [{"pid": a.pid, "node_id": a.node_id, "id": a.actor_id, "name": a.class_name} for a in found]


def newest_job() -> str | None:
    """The running job that started last on the cluster (the script just launched), or None if none runs yet."""
    jobs = [j for j in _state().list_jobs(address=_address(), raise_on_missing_output=False, timeout=10)
            if j.status == "RUNNING" and j.job_id]
    return max(jobs, key=lambda j: j.start_time or 0).job_id if jobs else None


def kill_one(kind: str, name: str | None, wait_s: float, job_id: str | None = None,
             when_exists: str | None = None) -> dict:
    """Wait for a matching process, SIGKILL it, return what was killed. Raises TimeoutError if none shows up."""
    deadline = time.monotonic() + wait_s
    while when_exists and not glob.glob(when_exists):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no file matching {when_exists} appeared within {wait_s:.0f} s")
        time.sleep(0.05)
    while True:
        job = newest_job() if job_id == "newest" else job_id
        found = candidates(kind, name, job) if job or job_id != "newest" else []
        for target in found:
            try:
                os.kill(target["pid"], signal.SIGKILL)
            except ProcessLookupError:  # it finished between the query and the kill: take the next one
                continue
            return {"killed_pid": target["pid"], "kind": kind, **target, "at": time.time()}
        if time.monotonic() > deadline:
            raise TimeoutError(f"no running {kind}{' ' + name if name else ''} found within {wait_s:.0f} s")
        time.sleep(0.25)  # each query is a call to the dashboard: a few per second are enough


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("kind", choices=KINDS, help="what to kill")
    parser.add_argument("name", nargs="?", default=None,
                        help="task name, actor class or deployment name (task and actor need one)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for such a process")
    parser.add_argument("--job-id", default=None,
                        help="only processes of this Ray job: its hex id, or 'newest' for the running job that "
                             "started last (a script you have just launched)")
    parser.add_argument("--when-exists", default=None, metavar="GLOB",
                        help="first wait until a file matching this pattern exists (e.g. a checkpoint folder)")
    args = parser.parse_args(argv)
    # Ray 2.60 starts a local cluster with token authentication (the token in ~/.ray/auth_token); a second
    # program must say so to talk to it. An exported RAY_AUTH_MODE (make cluster-up's settings) wins.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if args.kind in ("task", "actor") and not args.name:
        parser.error(f"{args.kind} needs a name: the task's function name or the actor's class name")
    try:
        killed = kill_one(args.kind, args.name, args.wait, args.job_id, args.when_exists)
    except TimeoutError as exc:
        print(f"error: {exc}; is the job running, and is RAY_ADDRESS its cluster?", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001  (no cluster, wrong token: one line)
        print(f"error: cannot query the Ray cluster ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
              f"check RAY_ADDRESS and the token settings, then `ray status`", file=sys.stderr)
        return 1
    print(json.dumps(killed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
