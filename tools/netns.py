"""Separate network hosts on one Linux machine: one network namespace per Ray node, each with its own IP address.

A bridge joins the hosts (veth pairs, one per host) and this machine's own namespace, which gets the bridge's
address: traffic goes between the hosts and this machine only, nothing is routed further. The addresses are in
a private test range (10.77.0.0/24 by default): the bridge is .1, host i is .(10 + i).

    .venv/bin/python -m tools.netns up          # bridge 10.77.0.1, hosts rwn0 10.77.0.10 and rwn1 10.77.0.11
    .venv/bin/python -m tools.netns cut 1       # host 1's link goes down: it goes silent (nothing is killed)
    .venv/bin/python -m tools.netns mend 1      # and up again
    .venv/bin/python -m tools.netns delay 1 50  # 50 ms each way on host 1's link; 0 removes it
    .venv/bin/python -m tools.netns rate 1 100  # host 1's link limited to 100 Mbit/s each way; 0 removes it
    .venv/bin/python -m tools.netns down        # remove the hosts and the bridge (as root, all of them)

A command runs on a host with `ip netns exec rwn0 COMMAND` (tools/cluster.py starts one Ray node on each).
`delay` uses tc's netem, which needs the kernel's sch_netem module (not every kernel has it); `rate` uses tc's
token bucket filter (tbf), which the kernels we tried have.
Needs Linux, root (or CAP_NET_ADMIN) and iproute2's `ip` and `tc`; `available()` says why not, where not.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

BRIDGE = "rwbr0"
PREFIX = "rwn"  # namespaces rwn0, rwn1, ...; their link on the bridge side: rwn0-br, rwn1-br, ...
SUBNET = "10.77.0"


class NetnsError(RuntimeError):
    """Why the hosts could not be created or changed, in one line."""


@dataclass
class Hosts:
    names: list[str]  # network namespaces, one per host
    ips: list[str]
    bridge: str = BRIDGE
    bridge_ip: str = f"{SUBNET}.1"

    def prefix(self, index: int) -> list[str]:
        """The command prefix that runs a command on host `index`."""
        return ["ip", "netns", "exec", self.names[index]]


def hosts(count: int = 2, subnet: str = SUBNET) -> Hosts:
    return Hosts([f"{PREFIX}{i}" for i in range(count)], [f"{subnet}.{10 + i}" for i in range(count)],
                 bridge_ip=f"{subnet}.1")


def available() -> str | None:
    """None if this machine can create the hosts, else why not (one line)."""
    if platform.system() != "Linux":
        return f"network namespaces need Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run as root, or with CAP_NET_ADMIN)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"iproute2's {' and '.join(missing)} not found (Debian/Ubuntu: apt install iproute2)"
    probe = f"{PREFIX}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    command = (["ip", "netns", "exec", netns] if netns else []) + list(args)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(command)}` failed: {proc.stderr.strip()}")


def existing(net: Hosts) -> list[str]:
    """Which of the hosts' namespaces and the bridge exist already."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found = [name for name in net.names if name in namespaces]
    if subprocess.run(["ip", "link", "show", net.bridge], capture_output=True).returncode == 0:
        found.append(net.bridge)
    return found


def create(net: Hosts) -> Hosts:
    """Create the bridge and one namespace per host; on any error remove what was made and raise NetnsError."""
    reason = available()
    if reason:
        raise NetnsError(reason)
    already = existing(net)
    if already:
        raise NetnsError(f"{', '.join(already)} exist already (another run's?); remove them with "
                         f"`python -m tools.netns down`")
    try:
        _ip("ip", "link", "add", net.bridge, "type", "bridge")
        _ip("ip", "addr", "add", f"{net.bridge_ip}/24", "dev", net.bridge)
        _ip("ip", "link", "set", net.bridge, "up")
        for name, address in zip(net.names, net.ips):
            _ip("ip", "netns", "add", name)
            _ip("ip", "link", "add", f"{name}-br", "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("ip", "link", "set", f"{name}-br", "master", net.bridge, "up")
            _ip("ip", "addr", "add", f"{address}/24", "dev", "eth0", netns=name)
            _ip("ip", "link", "set", "eth0", "up", netns=name)
            _ip("ip", "link", "set", "lo", "up", netns=name)
            # a default route, as a LAN machine has: `ray start` takes the source address of a route out as the
            # node's IP address (without one, the head takes 127.0.0.1). On the link itself, with no gateway:
            # an address off the test network gets no answer to its ARP request, so nothing leaves it
            _ip("ip", "route", "add", "default", "dev", "eth0", netns=name)
    except BaseException:
        remove(net)
        raise
    return net


def remove(net: Hosts) -> list[str]:
    """Remove the hosts: kill what still runs on them (a process keeps its namespace, and the link, alive),
    delete their namespaces (each veth pair goes with its namespace) and the bridge; returns what was removed."""
    removed = []
    for name in existing(net):
        if name == net.bridge:
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        if subprocess.run(["ip", "netns", "del", name], capture_output=True).returncode == 0:
            removed.append(name)
    for name in net.names:  # the bridge end of a pair whose namespace was deleted while a process still held it
        subprocess.run(["ip", "link", "del", f"{name}-br"], capture_output=True)
    if net.bridge in existing(net) and subprocess.run(["ip", "link", "del", net.bridge],
                                                      capture_output=True).returncode == 0:
        removed.append(net.bridge)
    return removed


def _require_up(net: Hosts, index: int) -> None:
    """One clear line if host `index` is not one of the hosts, or they are not up."""
    if not 0 <= index < len(net.names):
        raise NetnsError(f"no host {index}: the hosts are 0 to {len(net.names) - 1}")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    if net.names[index] not in listed:
        raise NetnsError(f"host {net.names[index]} is not up; run `python -m tools.netns up` first")


def cut(net: Hosts, index: int, down: bool = True) -> None:
    """Take host `index`'s link down (or up again): the host goes silent; its processes keep running."""
    _require_up(net, index)
    _ip("ip", "link", "set", f"{net.names[index]}-br", "down" if down else "up")


def delay(net: Hosts, index: int, ms: float) -> None:
    """Delay every packet on host `index`'s link by `ms` each way (tc netem on both ends); 0 removes it."""
    _require_up(net, index)
    for device, netns in ((f"{net.names[index]}-br", None), ("eth0", net.names[index])):
        if ms > 0:
            _ip("tc", "qdisc", "replace", "dev", device, "root", "netem", "delay", f"{ms}ms", netns=netns)
        else:
            subprocess.run((["ip", "netns", "exec", netns] if netns else []) + ["tc", "qdisc", "del", "dev", device,
                                                                                "root"], capture_output=True)


def rate(net: Hosts, index: int, mbit: float) -> None:
    """Limit host `index`'s link to `mbit` Mbit/s each way (tc tbf on both ends); 0 removes the limit."""
    _require_up(net, index)
    for device, netns in ((f"{net.names[index]}-br", None), ("eth0", net.names[index])):
        if mbit > 0:  # a bucket of 1/50 s of traffic (at least 64 kB) lets the rate hold without stalling TCP
            burst = max(64_000, int(mbit * 1e6 / 8 / 50))
            _ip("tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", f"{mbit}mbit", "burst", str(burst),
                "latency", "100ms", netns=netns)
        else:
            subprocess.run((["ip", "netns", "exec", netns] if netns else []) + ["tc", "qdisc", "del", "dev", device,
                                                                                "root"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.netns", description=__doc__.strip().splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "cut", "mend", "delay", "rate"])
    parser.add_argument("host", nargs="?", type=int, help="host index (cut, mend, delay, rate)")
    parser.add_argument("value", nargs="?", type=float, help="delay: milliseconds; rate: Mbit/s (0 removes it)")
    parser.add_argument("--hosts", type=int, default=2, help="how many hosts (up)")
    args = parser.parse_args()
    net = hosts(args.hosts)
    if args.command in ("cut", "mend", "delay", "rate") and args.host is None:
        parser.error(f"{args.command} needs a host index, e.g. `{args.command} 1`")
    if args.command in ("delay", "rate") and (args.value is None or args.value < 0):
        example = 50 if args.command == "delay" else 100
        parser.error(f"{args.command} needs a number >= 0, e.g. `{args.command} 1 {example}`")
    try:
        if args.command == "up":
            create(net)
            for name, address in zip(net.names, net.ips):
                print(f"{name}: {address}  (run a command there: ip netns exec {name} COMMAND)")
            print(f"This machine reaches them through {net.bridge} at {net.bridge_ip}.")
        elif args.command == "down":
            removed = remove(net)
            print(f"Removed {', '.join(removed)}." if removed else "Nothing to remove.")
        elif args.command in ("cut", "mend"):
            cut(net, args.host, down=args.command == "cut")
        elif args.command == "delay":
            delay(net, args.host, args.value)
        else:
            rate(net, args.host, args.value)
    except NetnsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
