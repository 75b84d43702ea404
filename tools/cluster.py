"""A real two-node Ray cluster on this one machine, with token authentication on.

Used by the test suite and by hand: a head node and a worker node started with `ray start`, each in its own
process group, so that stopping this cluster never touches another Ray on the machine (`ray stop` would).

    python -m tools.cluster          # start, print the environment to export, wait for Ctrl-C, stop
    python -m tools.cluster up       # start in the background (make cluster-up); state in .ray-cluster/
    python -m tools.cluster env      # print the export line again: eval "$(python -m tools.cluster env)"
    python -m tools.cluster kill-worker   # the worker node dies at once, as in a machine failure (a demo)
    python -m tools.cluster down     # stop exactly that cluster (make cluster-down)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workshop.serve_client import free_port

ROOT = Path(__file__).resolve().parent.parent
# What `up` started, for `env` and `down` (the tests point WORKSHOP_CLUSTER_STATE elsewhere).
STATE_FILE = Path(os.environ.get("WORKSHOP_CLUSTER_STATE", ROOT / ".ray-cluster" / "cluster.json"))


def _port_or_free(port: int) -> int:
    """`port` if nothing listens on it (Ray's usual ports read best in the README), else any free port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a just-closed port is free
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return free_port()
    return port


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@dataclass
class LocalCluster:
    address: str
    dashboard_url: str
    temp_dir: Path
    token_path: Path
    process_groups: list[int] = field(default_factory=list)  # [head, worker]: one group per node
    netns: list[str] = field(default_factory=list)  # the nodes' network namespaces (tools/netns.py); [] on 127.0.0.1
    # how the head node was started (its `ray start` arguments and environment), for restart_head(); not saved:
    # with GCS fault tolerance it holds the Redis password
    head_start: tuple[list[str], dict[str, str]] | None = field(default=None, repr=False)

    def prefix(self, index: int = 0) -> list[str]:
        """The command prefix that runs a command on node `index`'s host (a driver: on the head's, 0)."""
        return ["ip", "netns", "exec", self.netns[index]] if self.netns else []

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a driver that should join this cluster (scripts call a plain ray.init())."""
        env = dict(os.environ if base is None else base)
        env.update(
            RAY_ADDRESS=self.address,
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self.token_path),
        )
        env.pop("RAY_AUTH_TOKEN", None)
        return env

    def exports(self) -> str:
        return (f"export RAY_ADDRESS={self.address} RAY_AUTH_MODE=token "
                f"RAY_AUTH_TOKEN_PATH={self.token_path}")

    def stop_node(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Stop one node (0 = head, 1 = worker) at once, as a machine failure would: its raylet, object store
        and every worker process on it die together."""
        _kill_group(self.process_groups[index], sig)

    def restart_head(self, timeout: float = 120.0) -> None:
        """Start the head node again, as it was started, after stop_node(0): with GCS fault tolerance (a
        cluster started with `redis`) the new GCS reads the cluster's state back from Redis, and the worker
        node, which waits for a lost GCS (60 s by default), joins it again. The new head gets a temp dir of its
        own, as a head pod restarted by Kubernetes gets a fresh disk."""
        args, env = self.head_start
        fresh = self.temp_dir / f"h{len(list(self.temp_dir.glob('h[0-9]*')))}"
        args = [f"--temp-dir={fresh}" if a.startswith("--temp-dir=") else a for a in args]
        self.process_groups[0] = _ray_start(args, env, self.temp_dir / "ray-start.log", timeout, self.prefix(0))

    def alive(self) -> bool:
        """Whether the head node's processes are still running (and are still this cluster's)."""
        return bool(self.process_groups) and _is_our_group(self.process_groups[0], self.temp_dir)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in self.process_groups:
                _kill_group(pgid, sig)
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and any(_group_alive(g) for g in self.process_groups):
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {**asdict(self), "temp_dir": str(self.temp_dir), "token_path": str(self.token_path)}
        state.pop("head_start")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> LocalCluster:
        state = json.loads(path.read_text())
        return cls(address=state["address"], dashboard_url=state["dashboard_url"],
                   temp_dir=Path(state["temp_dir"]), token_path=Path(state["token_path"]),
                   process_groups=[int(g) for g in state["process_groups"]], netns=state.get("netns", []))


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _is_our_group(pgid: int, temp_dir: Path) -> bool:
    """True if a live process of group `pgid` belongs to the cluster in `temp_dir`: after a reboot the group
    id may have been reused by an unrelated program, which `down` must not kill."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if os.getpgid(proc.pid) == pgid and str(temp_dir) in " ".join(proc.info["cmdline"] or []):
                return True
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return False


def _ray_start(args: list[str], env: dict[str, str], log: Path, timeout: float, prefix: list[str]) -> int:
    """Run `ray start ...` (after `prefix`: on another host) in a new process group; return the group id (the
    daemons it leaves stay in it)."""
    with open(log, "a") as log_file:
        proc = subprocess.Popen(
            [*prefix, _ray_cli(), "start", *args], env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"`ray start {' '.join(args[:2])}` took over {timeout:.0f} s; see {log}") from None
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        _kill_group(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"`ray start` failed (exit {code}): {' | '.join(tail)}")
    return proc.pid


def start(head_cpus: int = 4, worker_cpus: int | None = 4, timeout: float = 120.0, *,
          gcs_port: int | None = None, dashboard_port: int | None = None, hosts=None,
          system_env: dict[str, str] | None = None, redis=None) -> LocalCluster:
    """Start a head node and one worker node on 127.0.0.1, wait until both are alive, return the cluster
    (`worker_cpus=None`: the head node alone).
    With `hosts` (tools.netns.Hosts, created), the head runs on the first host and the worker on the second,
    each at its own IP address: two machines as far as Ray can tell. `system_env`: Ray settings (RAY_...) for
    the nodes' processes, e.g. how often the GCS checks that a node is alive. With `redis`
    (tools.redis_store.Redis) the head's GCS keeps the cluster's state there: GCS fault tolerance.

    The logical CPU counts are deliberately above the physical cores: Train workers, Data actor pools
    and Serve replicas each hold 1 logical CPU, and on a 2-core machine they would otherwise starve
    each other and hang. Oversubscribing only makes them share the cores.
    Ports: free ones unless given (`up` asks for Ray's usual 6379 and 8265 when they are free).
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="rw-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    token_path = temp_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    gcs_port, dashboard_port = gcs_port or free_port(), dashboard_port or free_port()
    ips = hosts.ips[:2] if hosts is not None else ["127.0.0.1", "127.0.0.1"]
    cluster = LocalCluster(
        address=f"{ips[0]}:{gcs_port}",
        dashboard_url=f"http://{ips[0]}:{dashboard_port}",
        temp_dir=temp_dir,
        token_path=token_path,
        netns=hosts.names[:2] if hosts is not None else [],
    )
    env = cluster.env()
    env.pop("RAY_ADDRESS")
    # `ray job submit ... -- python X.py` runs `python` from the PATH of the node: make it this venv's python
    # (with Ray and the workshop's packages), also when the venv is not activated in the calling shell.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Serve's actors record task events (what `ray timeline` shows) only when the nodes start with this set
    env.setdefault("RAY_SERVE_ENABLE_TASK_EVENTS", "1")
    env.update(system_env or {})
    log = temp_dir / "ray-start.log"
    head_args = [
        "--head", f"--port={gcs_port}", f"--num-cpus={head_cpus}", f"--temp-dir={temp_dir}",
        f"--dashboard-host={ips[0]}", f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--node-ip-address={ips[0]}", "--disable-usage-stats",
    ]
    head_env = dict(env)
    if redis is not None:  # GCS fault tolerance: Ray's documented `ray start` settings
        head_env["RAY_REDIS_ADDRESS"] = redis.address
        head_args.append(f"--redis-password={redis.password}")
    cluster.head_start = (head_args, head_env)
    try:
        cluster.process_groups.append(_ray_start(head_args, head_env, log, timeout, cluster.prefix(0)))
        # Its own temp dir, as on a second machine: with a shared one, both nodes unpack a job's working_dir
        # into the same folder, and the second unpack deletes the files under the feet of a running job.
        if worker_cpus is not None:
            cluster.process_groups.append(_ray_start([
                f"--address={cluster.address}", f"--num-cpus={worker_cpus}", f"--temp-dir={temp_dir / 'w'}",
                f"--dashboard-agent-listen-port={free_port()}", f"--node-ip-address={ips[1]}",
                "--disable-usage-stats",
            ], env, log, timeout, cluster.prefix(1)))
        _wait_for_nodes(cluster, 1 if worker_cpus is None else 2, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for_nodes(cluster: LocalCluster, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    probe = "import ray; ray.init(); print(sum(n['Alive'] for n in ray.nodes()))"
    while True:
        proc = subprocess.run(
            [*cluster.prefix(), sys.executable, "-c", probe], env=cluster.env(), capture_output=True, text=True,
            timeout=timeout,
        )
        alive = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
        if alive and int(alive[0]) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {alive or 0} of {count} Ray nodes came up: {proc.stderr.strip()[-300:]}")
        time.sleep(1)


def _running(state_file: Path) -> LocalCluster | None:
    """The cluster recorded by `up`, if it is still running; a stale record is removed."""
    if not state_file.exists():
        return None
    try:
        cluster = LocalCluster.load(state_file)
    except (ValueError, KeyError, OSError):
        state_file.unlink(missing_ok=True)
        return None
    if cluster.alive():
        return cluster
    print(f"Removing the record of a cluster that is no longer running ({cluster.address})")
    for pgid in cluster.process_groups:  # a worker node left alone without its head
        if _is_our_group(pgid, cluster.temp_dir):
            _kill_group(pgid, signal.SIGKILL)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return None


def _print_usage(cluster: LocalCluster) -> None:
    print(f"""
Use it from any shell, with the venv active (source .venv/bin/activate):
  {cluster.exports()}
  ray status                                  # 2 active nodes
  python ray_core/ray_version/bootstrap_auc.py --smoke-test
  ray job submit --working-dir . -- python ray_core/ray_version/bootstrap_auc.py --smoke-test
Dashboard: {cluster.dashboard_url}  (paste the token from: cat {cluster.token_path})
Stop it:   make cluster-down""")


def up(state_file: Path = STATE_FILE, head_cpus: int = 4, worker_cpus: int = 4) -> int:
    cluster = _running(state_file)
    if cluster is not None:
        print(f"A two-node Ray cluster is already up at {cluster.address} (started by `make cluster-up`).")
        _print_usage(cluster)
        return 0
    print(f"Starting a head node ({head_cpus} logical CPUs) and a worker node ({worker_cpus}), token authentication "
          "on ...", flush=True)
    try:
        cluster = start(head_cpus, worker_cpus, gcs_port=_port_or_free(6379), dashboard_port=_port_or_free(8265))
    except RuntimeError as exc:
        print(f"error: the cluster did not start: {exc}", file=sys.stderr)
        return 1
    cluster.save(state_file)
    print(f"Two-node Ray cluster up at {cluster.address}; Ray's files and logs: {cluster.temp_dir}")
    _print_usage(cluster)
    return 0


def down(state_file: Path = STATE_FILE) -> int:
    cluster = _running(state_file)
    if cluster is None:
        print("No cluster started by `make cluster-up` is running; nothing to stop.")
        return 0
    cluster.stop()
    state_file.unlink(missing_ok=True)
    print(f"Stopped the two-node Ray cluster at {cluster.address} (other Ray clusters on this machine untouched).")
    print("Unset the variables in shells that exported them:  unset RAY_ADDRESS RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH")
    return 0


def _running_or_say_so(state_file: Path) -> LocalCluster | None:
    """The cluster of `make cluster-up`, or None after one error line saying to start it."""
    cluster = _running(state_file)
    if cluster is None:
        print("error: no cluster started by `make cluster-up` is running; run make cluster-up", file=sys.stderr)
    return cluster


def kill_worker(state_file: Path = STATE_FILE) -> int:
    cluster = _running_or_say_so(state_file)
    if cluster is None:
        return 1
    if not _is_our_group(cluster.process_groups[1], cluster.temp_dir):
        print("The worker node is not running (already killed?); `ray status` shows what is left.")
        return 0
    cluster.stop_node(1)
    print("Killed the worker node (raylet, object store and its worker processes, with SIGKILL). Ray notices "
          "within about 10-15 s: then `ray status` shows one active node, `ray list nodes` the DEAD one. "
          "make cluster-down cleans up.")
    return 0


def print_env(state_file: Path = STATE_FILE) -> int:
    cluster = _running_or_say_so(state_file)
    if cluster is None:
        return 1
    print(cluster.exports())
    return 0


def foreground() -> None:
    cluster = start()
    print(f"Two-node Ray cluster up. In another terminal:\n  {cluster.exports()}\n"
          f"Dashboard: {cluster.dashboard_url}\nCtrl-C stops it.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the cluster too, not only Ctrl-C
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster", description=__doc__.strip().splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["up", "down", "env", "kill-worker"],
                        help="up/down: start or stop the background cluster; env: print its export line; "
                             "kill-worker: kill its worker node (a failure demo); "
                             "none: start one in the foreground until Ctrl-C")
    parser.add_argument("--head-cpus", type=int, default=4, help="logical CPUs of the head node (up)")
    parser.add_argument("--worker-cpus", type=int, default=4, help="logical CPUs of the worker node (up)")
    args = parser.parse_args()
    if args.command is None:
        foreground()
    elif args.command == "up":
        sys.exit(up(head_cpus=args.head_cpus, worker_cpus=args.worker_cpus))
    else:
        sys.exit({"down": down, "env": print_env, "kill-worker": kill_worker}[args.command]())


if __name__ == "__main__":
    main()
