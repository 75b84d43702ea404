"""A real two-node Ray cluster on this one machine, with token authentication on.

Used by the test suite (and usable by hand): a head node and a worker node started with `ray start`,
each in its own process group so that stopping this cluster never touches another Ray on the machine.

    python -m workshop.cluster      # start, print the environment to export, wait for Ctrl-C, stop
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@dataclass
class LocalCluster:
    address: str
    dashboard_url: str
    temp_dir: Path
    token_path: Path
    process_groups: list[int] = field(default_factory=list)

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

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in self.process_groups:
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and any(_group_alive(g) for g in self.process_groups):
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _ray_start(args: list[str], env: dict[str, str], log: Path, timeout: float) -> int:
    """Run `ray start ...` in a new process group; return the group id (the daemons it leaves stay in it)."""
    with open(log, "a") as log_file:
        proc = subprocess.Popen(
            [_ray_cli(), "start", *args], env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"`ray start {' '.join(args[:2])}` took over {timeout:.0f} s; see {log}") from None
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"`ray start` failed (exit {code}): {' | '.join(tail)}")
    return proc.pid


def start(head_cpus: int = 4, worker_cpus: int = 4, timeout: float = 120.0) -> LocalCluster:
    """Start a head node and one worker node on 127.0.0.1, wait until both are alive, return the cluster.

    The logical CPU counts are deliberately above the physical cores: Train workers, Data actor pools
    and Serve replicas each hold 1 logical CPU, and on a 2-core machine they would otherwise starve
    each other and hang. Oversubscribing only makes them share the cores.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="rw-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    token_path = temp_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    gcs_port, dashboard_port = _free_port(), _free_port()
    cluster = LocalCluster(
        address=f"127.0.0.1:{gcs_port}",
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        temp_dir=temp_dir,
        token_path=token_path,
    )
    env = cluster.env()
    env.pop("RAY_ADDRESS")
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    log = temp_dir / "ray-start.log"
    try:
        cluster.process_groups.append(_ray_start([
            "--head", f"--port={gcs_port}", f"--num-cpus={head_cpus}", f"--temp-dir={temp_dir}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}", *common,
        ], env, log, timeout))
        cluster.process_groups.append(_ray_start([
            f"--address={cluster.address}", f"--num-cpus={worker_cpus}",
            f"--dashboard-agent-listen-port={_free_port()}", *common,
        ], env, log, timeout))
        _wait_for_nodes(cluster, 2, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for_nodes(cluster: LocalCluster, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    probe = "import ray; ray.init(); print(sum(n['Alive'] for n in ray.nodes()))"
    while True:
        proc = subprocess.run(
            [sys.executable, "-c", probe], env=cluster.env(), capture_output=True, text=True, timeout=timeout
        )
        alive = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
        if alive and int(alive[0]) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {alive or 0} of {count} Ray nodes came up: {proc.stderr.strip()[-300:]}")
        time.sleep(1)


def main() -> None:
    cluster = start()
    print(f"Two-node Ray cluster up. In another terminal:\n"
          f"  export RAY_ADDRESS={cluster.address} RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.token_path}\n"
          f"Dashboard: {cluster.dashboard_url}\nCtrl-C stops it.")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
