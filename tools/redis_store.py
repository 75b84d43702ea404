"""An external Redis for Ray's GCS fault tolerance: Debian's redis-server with a password, in a folder of its own.

With `RAY_REDIS_ADDRESS` and `--redis-password` the head node's GCS writes the cluster's state (nodes, actors,
jobs, Serve's applications) to Redis, and a GCS started again reads it back (ray_core/cluster/README.md,
section 5). tools/cluster.py starts such a head node when given a `Redis`; the cluster tests start one here.

    redis = redis_store.start("127.0.0.1")   # a free port, a fresh random password, append-only file on
    redis_store.check(redis.address, redis.password)   # raises RedisError with one line if it is not usable
    redis.stop()                                        # the server and its folder

Needs `redis-server` on the PATH (Debian/Ubuntu: `apt-get install redis-server`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from workshop.serve_client import free_port

INSTALL = "apt-get install redis-server (Debian/Ubuntu)"


class RedisError(RuntimeError):
    """Why a Redis cannot be started or used, in one line."""


@dataclass
class Redis:
    address: str  # host:port
    password: str
    folder: Path  # its configuration, append-only file and log
    pid: int  # the server, in a process group of its own
    process: subprocess.Popen | None = field(default=None, repr=False)

    def stop(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.process is not None:
            self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _command(*parts: str) -> bytes:
    """One command in Redis's wire protocol (RESP)."""
    return f"*{len(parts)}\r\n".encode() + b"".join(f"${len(p.encode())}\r\n{p}\r\n".encode() for p in parts)


def check(address: str, password: str, timeout: float = 3.0) -> None:
    """Raise RedisError (one line) unless the Redis at `address` answers and accepts `password`."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(_command("AUTH", password) + _command("PING"))
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except (OSError, ValueError) as exc:
        raise RedisError(f"no Redis answers at {address} ({exc.__class__.__name__}: {exc}); start it first, "
                         f"or pass the address it listens on") from None
    first = reply.split(b"\r\n", 1)[0].decode(errors="replace")
    if first != "+OK":
        raise RedisError(f"the Redis at {address} refuses the password ({first.lstrip('-') or 'no reply'}); "
                         "pass the password its `requirepass` sets")


def start(bind: str = "127.0.0.1", port: int | None = None, timeout: float = 15.0,
          prefix: list[str] | None = None) -> Redis:
    """Start redis-server on `bind`:`port` (a free port if not given) with a new random password and the
    append-only file on, in a new folder; return once it answers. `prefix`: run it on another host
    (tools.netns)."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RedisError(f"redis-server is not installed; install it: {INSTALL}")
    folder = Path(tempfile.mkdtemp(prefix="rw-redis-", dir="/tmp"))
    password = secrets.token_hex(16)
    port = port or free_port()
    config = folder / "redis.conf"  # the password in a file only this user reads, not on a command line
    config.touch(mode=0o600)
    config.write_text(f"bind {bind}\nport {port}\nrequirepass {password}\ndir {folder}\nappendonly yes\n"
                      f"save \"\"\nlogfile {folder / 'redis.log'}\ndaemonize no\n")
    proc = subprocess.Popen([*(prefix or []), executable, str(config)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = Redis(f"{bind}:{port}", password, folder, proc.pid, proc)
    deadline = time.monotonic() + timeout
    while True:
        try:
            check(redis.address, password, timeout=1.0)
            return redis
        except RedisError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = folder / "redis.log"
                why = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                redis.stop()
                raise RedisError(f"redis-server did not come up on {redis.address}: {(why or [str(exc)])[0]}") from None
            time.sleep(0.2)
