"""One clear line instead of a traceback or a 14-minute wait when `ray.init()` cannot start or join a cluster.

Not part of Ray: the workshop's Ray scripts call `ray.init()` exactly as Ray's docs write it, with this one
line before it:

    ray_connect.preflight()  # not Ray: one line, not a long wait, if RAY_ADDRESS or the token is wrong
    ray.init()

Copy a script into your own project without this module and delete that line: it runs the same.

What Ray 2.60 does on its own, measured on a 2-core machine (ray_core/cluster/README.md has the details):
- RAY_ADDRESS names a port where no Ray listens: ray.init() retries 20 times x ~41 s, about 14 minutes.
- RAY_ADDRESS names a port that answers but is not Ray's GCS (the dashboard's 8265): the same long wait.
- a missing token file: AuthenticationError at once; a wrong token, or RAY_AUTH_MODE unset against a
  token cluster: ConnectionError after about 21 s (20 tries, 1 s apart). Both as a traceback wall.
Here, before ray.init(): a TCP connection to RAY_ADDRESS and an HTTP/2 greeting (Ray's GCS is a gRPC server,
and a gRPC server answers with its HTTP/2 settings), both in seconds; and an exception hook that turns an
exception raised inside ray.init() into one line. Nothing here imports Ray until preflight() runs, and it uses
Ray's public API only (`ray.init`, to recognise where an exception was raised).
"""

from __future__ import annotations

import inspect
import os
import socket
import sys

from workshop.cli import fail

# The HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5): every HTTP/2 server,
# gRPC's included, answers with a SETTINGS frame of its own (frame type 4, the fourth byte).
HTTP2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
CHECK = "check RAY_ADDRESS, RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH (make cluster-up prints them), then `ray status`"


def _host_port(address: str) -> tuple[str, int] | None:
    """('10.0.0.5', 6379) from '10.0.0.5:6379' or 'ray://10.0.0.5:10001'; None for 'auto' and the like."""
    address = address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in address:
        return None
    return host.strip("[]"), int(port)


def _greeting(sock: socket.socket) -> bytes:
    """What the server at the other end says to an HTTP/2 greeting: its first bytes, or b"" if nothing."""
    sock.settimeout(5)
    sock.sendall(HTTP2_GREETING)
    answer = b""
    try:
        while len(answer) < 9:
            chunk = sock.recv(9 - len(answer))
            if not chunk:
                break
            answer += chunk
    except OSError:  # a timeout, or a reset: not an HTTP/2 server
        pass
    return answer


def _check_reachable(address: str) -> None:
    """Fail in seconds if nothing at RAY_ADDRESS answers, or if what answers is not Ray's GCS (ray.init() would
    wait for about 14 minutes)."""
    target = _host_port(address)
    if target is None:
        return  # 'auto', or an http:// address that ray.init() itself rejects at once
    try:
        with socket.create_connection(target, timeout=5) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # the greeting would have to go through TLS; ray.init() checks the rest
            answer = _greeting(sock)
    except socket.gaierror:
        fail(f"RAY_ADDRESS={address}: unknown host {target[0]!r}; use the head node's IP address and GCS port "
              f"(ray start --head prints it; the default port is 6379), or unset RAY_ADDRESS to run Ray here")
    except ConnectionRefusedError:
        fail(f"RAY_ADDRESS={address}: nothing listens there, so no Ray cluster is running at that address; "
              f"start one (make cluster-up) and export the address it prints, or unset RAY_ADDRESS to run Ray here")
    except OSError as exc:  # timeout, no route to host
        fail(f"RAY_ADDRESS={address}: no answer ({exc.strerror or 'timed out'}); a firewall or VPN may block the "
              f"port, or the head node is down: try `ray status` on the head node")
    if len(answer) < 4 or answer[3] != 4:  # no HTTP/2 SETTINGS frame: not a gRPC server, so not Ray's GCS
        what = "an HTTP server (a dashboard?)" if answer.startswith(b"HTTP/") else "a program that is not Ray's GCS"
        fail(f"RAY_ADDRESS={address}: {what} answers there, not a Ray cluster; it should be the head node's GCS "
              f"address (port 6379 by default, not the dashboard's 8265): {CHECK}")


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


def _raised_in_ray_init(tb) -> bool:
    import ray

    init = inspect.unwrap(ray.init).__code__  # ray.init itself, under its decorators
    while tb is not None:
        if tb.tb_frame.f_code is init:
            return True
        tb = tb.tb_next
    return False


def _excepthook(kind, exc, tb, _default=sys.excepthook) -> None:
    if issubclass(kind, Exception) and _raised_in_ray_init(tb):  # ray.init() failed: say what to check
        print(f"error: {_explain(exc, os.environ.get('RAY_ADDRESS', '').strip())}", file=sys.stderr, flush=True)
        return  # the interpreter exits with status 1, as after any uncaught exception
    _default(kind, exc, tb)


def preflight() -> None:
    """Before `ray.init()`: fail in seconds if RAY_ADDRESS does not answer as a Ray cluster, and make an exception
    raised inside ray.init() one line (a wrong or missing token, an http:// address, ...)."""
    sys.excepthook = _excepthook
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address in ("", "local"):
        return  # a new local Ray: nothing to reach
    _check_reachable(address)
