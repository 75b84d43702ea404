"""One clear line instead of a traceback or a 14-minute wait when `ray.init()` cannot start or join a cluster.

The Ray scripts call `ray.init()` exactly as Ray's docs write it, with one line before it and one after:

    ray_connect.preflight()      # seconds, not minutes, and one line, if RAY_ADDRESS or its token is wrong
    ray.init()                   # [1] start Ray on this machine, or join the cluster named by RAY_ADDRESS
    ray_connect.require_resources(1)  # one line if the cluster is too small for the work

Copy a script into your own project without this module and delete those two lines: it still runs.

What Ray 2.60 does on its own, measured on a 2-core machine (ray_core/cluster/README.md has the details):
- RAY_ADDRESS names a port where no Ray listens: ray.init() retries 20 times x ~41 s, about 14 minutes.
- a missing token file: AuthenticationError at once; a wrong token, or RAY_AUTH_MODE unset against a
  token cluster: ConnectionError after about 21 s (20 tries, 1 s apart). Both as a traceback wall.
- a cluster without enough CPUs: tasks, trials and Serve replicas wait for them forever.
Here: a TCP check of RAY_ADDRESS first (seconds), 5 tries instead of 20, a watchdog while joining, an
exception hook that turns an exception raised inside ray.init() into one line, and a CPU check after.
Nothing in this module imports Ray until a Ray script calls it, so the baselines never load Ray.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time

# Joining a running cluster takes a few seconds; past this, ray.init() is waiting on something that is not
# a Ray cluster (a dashboard port, a firewall that drops packets). A slow VPN may need more.
CONNECT_TIMEOUT_S = float(os.environ.get("WORKSHOP_RAY_CONNECT_TIMEOUT", "45"))
CHECK = "check RAY_ADDRESS, RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH (make cluster-up prints them), then `ray status`"


def _fail(message: str) -> None:
    from workshop.cli import fail  # here, not at the top: cli imports this module

    fail(message)


def _host_port(address: str) -> tuple[str, int] | None:
    """('10.0.0.5', 6379) from '10.0.0.5:6379' or 'ray://10.0.0.5:10001'; None for 'auto' and the like."""
    address = address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in address:
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    """Fail in seconds if nothing accepts a connection at RAY_ADDRESS (Ray would retry for about 14 minutes)."""
    target = _host_port(address)
    if target is None:
        return  # 'auto', or an http:// address that ray.init() itself rejects at once
    try:
        socket.create_connection(target, timeout=5).close()
    except socket.gaierror:
        _fail(f"RAY_ADDRESS={address}: unknown host {target[0]!r}; use the head node's IP address and GCS port "
              f"(ray start --head prints it; the default port is 6379), or unset RAY_ADDRESS to run Ray here")
    except ConnectionRefusedError:
        _fail(f"RAY_ADDRESS={address}: nothing listens there, so no Ray cluster is running at that address; "
              f"start one (make cluster-up) and export the address it prints, or unset RAY_ADDRESS to run Ray here")
    except OSError as exc:  # timeout, no route to host
        _fail(f"RAY_ADDRESS={address}: no answer ({exc.strerror or 'timed out'}); a firewall or VPN may block the "
              f"port, or the head node is down: try `ray status` on the head node")


def _explain(exc: BaseException, address: str) -> str:
    """One line from ray.init()'s exception and the exceptions it was raised from."""
    chain, cause = [], exc
    while cause is not None and len(chain) < 5:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(e) for e in chain)
    where = f"RAY_ADDRESS={address}" if address else "a new local Ray"
    if "InvalidAuthToken" in text or "token is missing or incorrect" in text:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        return (f"the Ray cluster at {where} rejected this program's authentication token (RAY_AUTH_MODE={mode}, "
                f"RAY_AUTH_TOKEN_PATH={os.environ.get('RAY_AUTH_TOKEN_PATH', 'unset')}); export RAY_AUTH_MODE=token "
                f"and RAY_AUTH_TOKEN_PATH=<the cluster's token file>, then `ray status`")
    if "no authentication token was found" in text or "RAY_AUTH_TOKEN_PATH is set but" in text:
        detail = "RAY_AUTH_TOKEN_PATH names a missing or empty file" if "RAY_AUTH_TOKEN_PATH is set" in text \
            else "no token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
        return (f"the Ray cluster at {where} needs an authentication token and this program has none ({detail}); "
                f"export RAY_AUTH_TOKEN_PATH=<the cluster's token file>, then `ray status`")
    if "HTTP address" in text:
        return (f"RAY_ADDRESS={address} is an HTTP (dashboard) address; ray.init() needs the GCS address, "
                f"host:6379 (ray job submit is the command that takes http://host:8265)")
    first = next((line.strip() for e in chain for line in str(e).splitlines() if line.strip()), type(exc).__name__)
    return f"could not start or join a Ray cluster ({where}): {first[:200]}; {CHECK}"


def _give_up(address: str) -> None:
    """Watchdog: ray.init() is still waiting. os._exit, because the main thread is blocked inside Ray's C++."""
    print(f"error: no Ray cluster answered at RAY_ADDRESS={address} within {CONNECT_TIMEOUT_S:.0f} s; it should be "
          f"the head node's GCS address (port 6379 by default, not the dashboard's 8265): {CHECK}",
          file=sys.stderr, flush=True)
    os._exit(1)


def _watch(address: str) -> None:
    """Watchdog thread: give up if ray.init() has not connected within CONNECT_TIMEOUT_S."""
    import ray

    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while time.monotonic() < deadline:
        if ray.is_initialized():
            return
        time.sleep(0.2)
    _give_up(address)


def _raised_in_ray_init(tb) -> bool:
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "init" and code.co_filename.replace("\\", "/").endswith("ray/_private/worker.py"):
            return True
        tb = tb.tb_next
    return False


def _excepthook(kind, exc, tb, _default=sys.excepthook) -> None:
    if issubclass(kind, Exception) and _raised_in_ray_init(tb):  # ray.init() failed: say what to check
        print(f"error: {_explain(exc, os.environ.get('RAY_ADDRESS', '').strip())}", file=sys.stderr, flush=True)
        return  # the interpreter exits with status 1, as after any uncaught exception
    _default(kind, exc, tb)


def preflight(worker_logs: bool = True) -> None:
    """Before `ray.init()`: fail in seconds if RAY_ADDRESS does not answer, bound the time ray.init() may wait,
    and make an exception raised inside ray.init() one line (wrong token, dashboard port, ...).

    worker_logs=False: what Ray's worker processes print stays in their log files (the session's logs folder,
    /tmp/ray/session_latest/logs on the machine that runs them) instead of being copied to this console:
    `ray.init(log_to_driver=False)`, for the scripts whose workers are a library's chatty engine (vLLM).
    """
    if not worker_logs and "RAY_LOG_TO_DRIVER" not in os.environ:
        from ray._private import ray_constants  # what a plain ray.init() reads for log_to_driver

        ray_constants.RAY_LOG_TO_DRIVER = False
    sys.excepthook = _excepthook
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address in ("", "local"):
        return  # a new local Ray: nothing to reach
    _check_reachable(address)
    # ray.init() tries a rejected token 20 times, 1 s apart, before it says so; 5 tries are plenty for a
    # cluster whose port is known to answer (read by Ray at connect time; the user's own value wins)
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "5")
    threading.Thread(target=_watch, args=(address,), daemon=True).start()


def require_resources(amount: float = 1, resource: str = "CPU", why: str = "") -> None:
    """After `ray.init()`: fail in one line if the cluster has less of a resource than the work needs (its tasks,
    trials or replicas would wait for it forever)."""
    import ray

    have = ray.cluster_resources().get(resource, 0)
    if have < amount:
        _fail(f"the Ray cluster has {have:g} {resource}s and this script needs at least {amount:g}{why}, so its work "
              f"would wait forever; ask for less, or add a node (ray start --address=<head>:6379 --num-cpus=N, "
              f"--num-gpus=N) and check `ray status`")


def quiet_console(logger: str = "ray.data") -> None:
    """Keep a Ray library's INFO lines (Ray Data: execution plans, size estimates, "execution finished") out of the
    console; they still go to its log file (ray-data.log in the session's logs folder), and warnings still print.
    Ray Data sets up its handlers when it is imported: a console one and a session-file one."""
    for handler in logging.getLogger(logger).handlers:
        if isinstance(handler, logging.StreamHandler):  # the console handler; the file handler is not a stream one
            handler.setLevel(logging.WARNING)
