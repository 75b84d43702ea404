"""What a slow network costs Ray's object transfers: one object moved between two hosts at several link speeds.

    .venv/bin/python ray_core/benchmarks/slow_link.py               # as root: 256 MiB, no limit, 1000, 100 Mbit/s
    .venv/bin/python ray_core/benchmarks/slow_link.py --smoke-test  # 8 MiB, no limit and 100 Mbit/s

Two hosts with their own IP addresses on this machine (tools/netns.py, network namespaces: needs Linux and
root), one Ray node on each (tools/cluster.py). A task pinned to the worker host makes a float32 array of
--megabytes; the driver, on the head host, gets it with ray.get: Ray's object manager pulls it across the link.
For each link speed (tc's token bucket filter on the worker's link, `python -m tools.netns rate`), --repeats
transfers one after another, each of a new object; then the slowest speed again on a cluster started with a
longer `object_manager_pull_timeout_ms` (Ray's default: 10000): a pull that takes longer than that is asked
for again, and the duplicate transfer goes on competing for the link. Writes reports/ray_core_slow_link.{json,md}.
The lesson: a task's result moves to whoever calls ray.get on it; on a slow link keep big objects where the work
that reads them runs (pass ObjectRefs on, not values), and give big pulls the time they need.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tools/ (run as `python ray_core/benchmarks/slow_link.py`)
from tools import cluster as local_cluster, netns, tour  # noqa: E402

# The driver: runs on the head's host against the cluster. For each line on stdin (the link is set), `repeats`
# transfers; prints one JSON line with the seconds of each ray.get.
DRIVER = r"""
import json, sys, time
import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

megabytes, repeats, worker_ip = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ray.init(logging_config=ray.LoggingConfig(log_level="WARNING"))
[worker] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == worker_ip]

@ray.remote(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(worker, soft=False))
def make(megabytes, seed):
    return np.full(megabytes * 2**20 // 4, seed, dtype=np.float32)

print("ready", flush=True)
for _ in sys.stdin:
    seconds = []
    for seed in range(repeats):
        ref = make.remote(megabytes, seed)
        ray.wait([ref], fetch_local=False)  # made on the worker; nothing moved yet
        started = time.perf_counter()
        array = ray.get(ref)  # pulled across the link into the head's object store
        seconds.append(time.perf_counter() - started)
        assert array.nbytes == megabytes * 2**20 and array[-1] == seed
        del array, ref
    print(json.dumps(seconds), flush=True)
"""


PULL_TIMEOUT = {"RAY_object_manager_pull_timeout_ms": "120000"}  # Ray's default: 10000


def link(rate: float | None) -> str:
    return f"{rate:g} Mbit/s" if rate else "no limit (veth)"


def measure(net: netns.Hosts, rates: list[float], args, system_env: dict[str, str]) -> list[dict]:
    """A two-node cluster with these Ray settings; for each link speed, `repeats` transfers one after another."""
    cluster = driver = None
    rows = []
    try:
        cluster = local_cluster.start(head_cpus=1, worker_cpus=1, hosts=net, system_env=system_env)
        driver = subprocess.Popen([*cluster.prefix(0), sys.executable, "-c", DRIVER, str(args.megabytes),
                                   str(args.repeats), net.ips[1]], cwd=ROOT, env=cluster.env(), text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if driver.stdout.readline().strip() != "ready":
            sys.exit(f"error: the transfer driver did not start (exit {driver.wait()}); see its output above")
        for rate in rates:
            netns.rate(net, 1, rate)
            driver.stdin.write("go\n")
            driver.stdin.flush()
            line = driver.stdout.readline()
            if not line:
                sys.exit(f"error: the transfer driver failed (exit {driver.wait()}); see its output above")
            seconds = json.loads(line)
            median = statistics.median(seconds)
            rows.append({"link_mbit_s": rate or None, "ray_settings": system_env, "megabytes": args.megabytes,
                         "seconds": [round(x, 2) for x in seconds], "median_seconds": round(median, 3),
                         "effective_mbit_s": round(args.megabytes * 2**20 * 8 / median / 1e6, 1)})
            print(f"worker's link {link(rate)}, {settings(system_env)}: {args.megabytes} MiB in "
                  f"{', '.join(f'{x:.2f}' for x in seconds)} s", flush=True)
        driver.stdin.close()
        driver.wait(timeout=60)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        if cluster is not None:
            cluster.stop()
        netns.rate(net, 1, 0)
    return rows


def settings(system_env: dict[str, str]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in system_env.items()) or "Ray's defaults"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=256, help="size of each object (MiB)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0, 1000, 100],
                        help="link speeds in Mbit/s (0: no limit); the slowest again with a longer pull timeout")
    parser.add_argument("--repeats", type=int, default=3, help="transfers per speed, one after another")
    parser.add_argument("--smoke-test", action="store_true",
                        help="8 MiB, no limit and 100 Mbit/s, 2 repeats, Ray's defaults only")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports", help="folder for the report files")
    args = parser.parse_args()
    if args.smoke_test:
        args.megabytes, args.rates, args.repeats = 8, [0, 100], 2
    if args.megabytes < 1 or args.repeats < 1 or any(rate < 0 for rate in args.rates):
        parser.error("--megabytes and --repeats must be at least 1, --rates at least 0")
    reason = netns.available()
    if reason:  # a machine without them (not root, macOS): `make bench` goes on with the other benchmarks
        print(f"skipped: this benchmark needs two network hosts on this machine, and {reason}", file=sys.stderr)
        return
    net = netns.hosts(2)
    try:
        netns.create(net)
    except netns.NetnsError as exc:
        sys.exit(f"error: {exc}")
    try:
        rows = measure(net, args.rates, args, {})
        slowest = min((rate for rate in args.rates if rate > 0), default=None)
        if slowest is not None and not args.smoke_test:
            rows += measure(net, [slowest], args, PULL_TIMEOUT)
    finally:
        netns.remove(net)
    report = {**tour.stamp(), "hosts": net.ips, "repeats": args.repeats, "smoke_test": args.smoke_test,
              "rows": rows}
    table = ["| worker's link | Ray settings | object | ray.get, one after another | effective rate (median) |",
             "|---|---|---:|---|---:|",
             *(f"| {link(r['link_mbit_s'])} | {settings(r['ray_settings'])} | {r['megabytes']} MiB "
               f"| {', '.join(f'{x:.2f}' for x in r['seconds'])} s | {r['effective_mbit_s']:,} Mbit/s |"
               for r in rows)]
    report["table"] = table
    args.reports.mkdir(parents=True, exist_ok=True)
    stem = args.reports / f"ray_core_slow_link{'_smoke' if args.smoke_test else ''}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"Written: {stem}.json and .md")


if __name__ == "__main__":
    main()
