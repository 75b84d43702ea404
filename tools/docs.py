"""The READMEs' measured figures, written from the committed reports in docs/reports/.

    python -m tools.docs record   # copy this machine's reports/*.json into docs/reports/, named by Python version
    python -m tools.docs record /tmp/fresh-clone/reports   # the reports of a fresh clone's .ci/run and make demo
    make docs                     # rewrite every generated block in the Markdown files (cog -r)

A generated block in a Markdown file calls a function of this module between cog markers; tests/test_docs.py
fails when a block differs from what the committed reports give (`cog --check`).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "docs" / "reports"
# What set-up and the test runs write into reports/ (git-ignored), and what `record` keeps of them.
RECORDED = ("install", "test", "test-slow", "demo", "bench", "workshop_times", "crossover",
            "ray_tune_metric_vs_time", "ray_data_memory_curve", "ray_train_fit_overhead", "ray_train_recovery_time",
            "ray_serve_c32", "ray_serve_load_ramp", "vllm_examples_llm_throughput", "cluster_link_cut",
            "cluster_head_restart", "ray_core_slow_link")


def load(name: str) -> dict:
    return json.loads((REPORTS / f"{name}.json").read_text())


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def report_python(report: dict) -> str:
    return report.get("python") or report["versions"]["python"]


def recorded_name(name: str, report: dict) -> str:
    """NAME-pyX.Y, or NAME-MODULE-pyX.Y for a tour of one module (`python -m tools.tour --module M`)."""
    modules = {row["module"] for row in report.get("rows", []) if "module" in row}
    scope = f"-{modules.pop()}" if name in ("demo", "bench") and len(modules) == 1 else ""
    return f"{name}{scope}-py{minor(report_python(report))}"


def record(source: Path = ROOT / "reports") -> list[Path]:
    """Copies reports/NAME.json to docs/reports/ under recorded_name(), for each report this machine has written.
    Left out: an install report of a set-up re-run (it measures no install), and a test report from a checkout with
    uncommitted changes (no commit stands for it: record the one a fresh clone's .ci/run writes)."""
    written = []
    for name in RECORDED:
        path = source / f"{name}.json"
        report = json.loads(path.read_text()) if path.exists() else None
        if report is not None and report.get("clean_checkout") is False:
            print(f"not recorded: {path} ran on uncommitted changes; record a fresh clone's run", file=sys.stderr)
        elif report is not None and report.get("fresh_venv", True):
            target = REPORTS / f"{recorded_name(name, report)}.json"
            REPORTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            written.append(target)
    return written


def gigabytes(mb: float) -> str:
    return f"{mb / 1000:.1f} GB"


def torch_build(install: dict) -> str:
    if "+cpu" in install["torch"]:
        return f"{install['torch']} (CPU build)"
    return f"{install['torch']} (PyPI's build: CUDA on Linux x86-64)"


def install_summary(python: str = "3.11") -> str:
    """One sentence for the Quick start: how long set-up took and how big it is."""
    install = load(f"install-py{python}")
    return (f"Set-up took {install['seconds'] / 60:.1f} minutes on a fresh clone ({install['machine']['cores']} cores, "
            f"{install['date']}, Python {install['python']}, torch {install['torch']}): "
            f"{gigabytes(install['venv_mb'])} in `.venv`, vLLM's CPU build included, and "
            f"{install['models_cache_mb']} MB of converted model in `~/.cache/ray-workshop/`.")


def test_result(report: dict) -> str:
    failed = report["failed"] + report["error"]
    outcome = f"{report['passed']} passed" + (f", {failed} failed" if failed else "")
    skipped = f", {report['skipped']} skipped" if report["skipped"] else ""
    return f"`{report['command']}` {outcome}{skipped} in {report['seconds']:.0f} s"


def demo_result(report: dict) -> str:
    modules = sorted({row["module"] for row in report["rows"]})
    agreed = sum(1 for row in report["rows"] if row.get("agree"))
    command = f"`python -m tools.tour --module {modules[0]}`" if len(modules) == 1 else "`make demo`"
    return f"{command}: {agreed} of {len(report['rows'])} rows agree"


def elsewhere(report: dict, install: dict) -> str:
    """Where a report's run differs from the set-up's row in date or machine: that date and CPU, in brackets."""
    same = report["date"] == install["date"] and install["machine"]["cpu"] in report["machine"]
    return "" if same else f" ({report['date']}, {report['machine'].split(', ')[1]})"


def verified_platforms() -> str:
    """A Markdown table: per Python version, what set-up installed and which commands passed, with the machine."""
    lines = ["| Python | date, machine | torch set-up installed | set-up | `.venv` | then |",
             "|---|---|---|---:|---:|---|"]
    by_version = lambda p: [int(x) for x in p.stem.removeprefix("install-py").split(".")]  # noqa: E731
    for path in sorted(REPORTS.glob("install-py*.json"), key=by_version):
        install = json.loads(path.read_text())
        py = minor(install["python"])
        machine = install["machine"]
        reports = [load(f"{name}-py{py}") for name in ("test", "test-slow")
                   if (REPORTS / f"{name}-py{py}.json").exists()]
        demos = [json.loads(p.read_text()) for p in sorted(REPORTS.glob(f"demo*-py{py}.json"))]
        checks = [test_result(r) + elsewhere(r, install) for r in reports]
        checks += [demo_result(r) + elsewhere(r, install) for r in demos]
        lines.append(f"| {install['python']} | {install['date']}, {machine['cores']} cores, {machine['cpu']}, "
                     f"{machine['system']} {machine['arch']} | {torch_build(install)} | "
                     f"{install['seconds']:.0f} s | {gigabytes(install['venv_mb'])} | {'; '.join(checks) or '-'} |")
    return "\n".join(lines)


def demo_output(python: str = "3.11") -> str:
    """`make demo`'s first lines and its closing summary, from the recorded report, as the tour prints them."""
    from tools.tour import Row, summary

    report = load(f"demo-py{python}")
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    rows = [Row(**row) for row in report["rows"]]
    return "\n".join(["```", f"Ray workshop tour (demo) on {report['machine']}", f"Versions: {versions}", "...",
                      summary(rows, report["total_seconds"]), "```"])


def demo_stamp(python: str = "3.11") -> str:
    report = load(f"demo-py{python}")
    return f"{report['date']}, {report['machine']}"


def demo_heading(python: str = "3.11") -> str:
    report = load(f"demo-py{python}")
    first = report.get("first_row_seconds")
    return f"{demo_stamp(python)}" + (f"; first row after {first:.0f} s:" if first else ":")


def demo_seconds(python: str = "3.11") -> str:
    return f"{load(f'demo-py{python}')['total_seconds']:.0f} s"


def module_seconds(module: str, python: str = "3.11") -> str:
    """Wall-clock seconds of a module's workshop commands, both sides (tools/time_workshop.py)."""
    steps = load(f"workshop_times-py{python}")["steps"]
    return f"{sum(step['seconds'] for step in steps if step['module'] == module):.0f} s"


# The top README's agenda: minutes, module, what you learn, and whose commands' time fills the last column.
AGENDA = [
    ("0-5", "this page", "start `make demo` in a second terminal; it runs on while you begin ray_core", None),
    ("5-20", "[ray_core](ray_core/README.md)",
     "tasks, `ray.put`, `ray.wait`, actors; a worker killed from outside, and Ray's retry", "ray_core"),
    ("20-30", "[ray_data](ray_data/README.md)",
     "streaming a pandas pipeline: blocks, `map_batches`, MiniLM on an actor pool", "ray_data"),
    ("30-40", "[ray_train](ray_train/README.md)",
     "a PyTorch loop on N workers; checkpoints; recovery from a killed worker", "ray_train"),
    ("40-50", "[ray_tune](ray_tune/README.md)",
     "Optuna one trial at a time vs `Tuner`: parallel trials, ASHA, restore", "ray_tune"),
    ("50-60", "[ray_serve](ray_serve/README.md)",
     "a FastAPI model server on Serve: batching, autoscaling, composition", "ray_serve"),
    ("after", "[vllm_examples](vllm_examples/README.md), [cluster](ray_core/cluster/README.md)",
     "LLM batch jobs and an OpenAI-compatible server with vLLM on Ray; the scripts on a cluster", "vllm_examples"),
]


def agenda(python: str = "3.11") -> str:
    lines = ["| minutes | module | what you learn | its commands take |", "|---:|---|---|---:|"]
    for minutes, module, what, key in AGENDA:
        took = module_seconds(key, python) if key else demo_seconds(python)
        lines.append(f"| {minutes} | {module} | {what} | {took} |")
    return "\n".join(lines)


def workshop_sentence(module: str, python: str = "3.11") -> str:
    """How long a module's "In the workshop" commands take, all of them, as tools/time_workshop.py ran them."""
    return (f"Everything this section asks you to run takes {module_seconds(module, python)}, one command after "
            f"another ({workshop_times_stamp(python)}).")


def cluster_up_output(python: str = "3.11") -> str:
    """What `make cluster-up` printed when tools/time_workshop.py ran ray_core's commands."""
    steps = load(f"workshop_times-py{python}")["steps"]
    output = next(step["output"] for step in steps if step["command"] == "make cluster-up")
    return fenced(output[output.find("Starting "):])  # what tools/cluster.py printed (make may set up first)


def workshop_times_stamp(python: str = "3.11") -> str:
    report = load(f"workshop_times-py{python}")
    return f"{report['date']}, {report['machine']}"


def stamp(report: dict) -> str:
    """Where and when a report was written: '2026-12-05, 2 CPUs, AMD EPYC, Linux x86_64, Python 3.11.7'."""
    return f"{report['date']}, {report['machine']}, Python {report_python(report)}"


def tour_row(report: dict, module: str, pair: str, label: str = "") -> dict:
    for row in report["rows"]:
        if (row["module"], row["pair"], row["label"]) == (module, pair, label):
            return row
    raise KeyError(f"no row {module}/{pair} [{label}] in the report")


def script_output(module: str, pair: str, side: str = "ray_version", python: str = "3.11", report: str = "demo",
                  label: str = "") -> str:
    """What one side printed in a recorded tour (`make demo`, or `bench-MODULE` for `make bench`), fenced."""
    name = f"demo-py{python}" if report == "demo" else f"{report}-py{python}"
    # root=None in fenced(): the same text wherever this repository is cloned
    return fenced(tour_row(load(name), module, pair, label)["output"][side])


def fenced(text: str) -> str:
    from tools.tour import tail

    return "```\n" + tail(text, root=None).strip("\n") + "\n```"


def table(name: str, python: str = "3.11") -> str:
    """A benchmark script's own table from its report, as the script printed it (its heading left out; a verdict
    against a planning target, which reports recorded before 2026-12-08 still hold, left out too)."""
    lines = load(f"{name}-py{python}")["table"]
    return "\n".join(re.sub(r" \(target [^)]*\)", "", line) for line in lines
                     if not line.startswith(("# ", "Machine:"))).strip("\n")


def bench_report(module: str, python: str = "3.11") -> dict:
    return load(f"bench-{module}-py{python}")


def bench_table(module: str, python: str = "3.11") -> str:
    """The module's `make bench` rows as the tour prints them. A pair's smoke_note explains its smoke size, so it
    is left out of a bench row (reports recorded before the tour stopped writing it there still hold it)."""
    from tools.tour import Row, discover, markdown_table

    smoke_notes = {(p.module, p.name): p.spec.get("smoke_note") for p in discover([module])}
    rows = [Row(**{**row, "note": "" if row["note"] == smoke_notes.get((row["module"], row["pair"])) else row["note"]})
            for row in bench_report(module, python)["rows"]]
    return markdown_table(rows)


def speedup(module: str, pair: str, label: str, python: str = "3.11") -> float:
    return tour_row(bench_report(module, python), module, pair, label)["speedup"]


CROSSOVER_COLUMNS = {"pool_chunksize_1": "Pool, chunksize 1", "pool_auto_chunks": "Pool, its own chunks",
                     "ray_get_all": "Ray, `ray.get(all)`", "ray_wait_one": "Ray, `ray.wait(num_returns=1)` loop"}


def crossover_table(python: str = "3.11") -> str:
    """ray_core/benchmarks/crossover.py: speedup over a sequential loop by task duration."""
    rows = load(f"crossover-py{python}")["rows"]
    lines = ["| one task | tasks | sequential s | " + " | ".join(CROSSOVER_COLUMNS.values()) + " |",
             "|---:|---:|---:|" + "---:|" * len(CROSSOVER_COLUMNS)]
    for row in rows:
        task = f"{row['task_ms'] / 1000:g} s" if row["task_ms"] >= 1000 else f"{row['task_ms']} ms"
        lines.append(f"| {task} | {row['tasks']:,} | {row['sequential_s']:.2f} | "
                     + " | ".join(f"{row[key + '_speedup']:.2f}x" for key in CROSSOVER_COLUMNS) + " |")
    return "\n".join(lines)


def crossover_findings(python: str = "3.11") -> str:
    """What the crossover table says, in numbers taken from it."""
    rows = load(f"crossover-py{python}")["rows"]
    paying = [row for row in rows if row["ray_get_all_speedup"] > 1.0]
    first = f"at tasks of {paying[0]['task_ms']} ms" if paying else "at none of the task sizes measured"
    last = rows[-1]
    best_pool = max(last["pool_chunksize_1_speedup"], last["pool_auto_chunks_speedup"])
    ahead = sum(max(r["pool_chunksize_1_speedup"], r["pool_auto_chunks_speedup"]) > r["ray_get_all_speedup"]
                for r in rows)
    return (f"- **Ray starts to beat the sequential loop {first}**, and reaches "
            f"{last['ray_get_all_speedup']:.2f}x with the longest tasks.\n"
            f"- **A Pool is ahead at {ahead} of {len(rows)} task sizes** on one machine for plain CPU work "
            f"({best_pool:.2f}x against Ray's {last['ray_get_all_speedup']:.2f}x at the longest): Ray's raylet, "
            "GCS and object store share the cores with the work.")


def ray_core_findings(python: str = "3.11") -> str:
    report = bench_report("ray_core", python)
    sequential = tour_row(report, "ray_core", "bootstrap_auc", "vs sequential")
    pool = tour_row(report, "ray_core", "bootstrap_auc", "vs Pool")
    pool_over_loop = sequential["baseline_seconds"] / pool["baseline_seconds"]
    return (f"Ray tasks against a sequential loop: {sequential['speedup']:.2f}x; against a Pool: "
            f"{pool['speedup']:.2f}x. The Pool itself reaches {pool_over_loop:.2f}x over the loop on the same "
            "machine; on 2 cores no way of running the resamples passes 2x.")


def ray_train_findings(python: str = "3.11") -> str:
    """What the classifier's bench rows say: scaling efficiency at two batch sizes, against the full machine, and
    what Ray Train costs with one worker."""
    report = bench_report("ray_train", python)
    rows = [r for r in report["rows"] if r["pair"] == "train_classifier"]
    lora = tour_row(report, "ray_train", "finetune_lora")
    row = lambda start: next(r for r in rows if r["label"].startswith(start))  # noqa: E731
    drift = lambda r: f"{r['max_relative_difference']:.1e}" if r["max_relative_difference"] else "0 (bit for bit)"  # noqa: E731
    from tools.tour import discover

    [spec] = [p.spec for p in discover(["ray_train"]) if p.name == "train_classifier"]
    small, large = row("scaling efficiency (")["speedup"] / 2, row("scaling efficiency at batch")["speedup"] / 2
    return (f"- **Scaling efficiency** (2 workers x 1 thread against 1 process x 1 thread, divided by 2): "
            f"{small:.2f} at the default batch of 256 and {large:.2f} at batch 2,048. Every optimizer step ends in "
            "a gloo all-reduce of the gradients between the two processes; at batch 256 a step of this MLP is "
            "about as long as that all-reduce, and a batch eight times larger makes eight times fewer of them. On "
            "2 vCPUs the workers also share the cores with Ray's own processes; with more cores than workers, or "
            "GPU workers, the all-reduce is a smaller share of each step.\n"
            f"- **Against the full machine** (1 process on torch's 2 threads): "
            f"{row('2 Ray workers (1 CPU each)')['speedup']:.2f}x. One process took "
            f"{row('scaling efficiency (')['baseline_seconds']:.1f} s on 1 thread and "
            f"{row('2 Ray workers (1 CPU each)')['baseline_seconds']:.1f} s on 2: steps this small gain little from "
            "a second core, whether torch's second thread or a second worker, and the worker adds an all-reduce "
            "to every step.\n"
            f"- **What Ray Train itself costs** (1 worker against the plain loop): "
            f"{row('1 Ray worker')['speedup']:.2f}x, the loop alone (Ray's start-up and `trainer.fit`'s set-up "
            "are below).\n"
            f"- **How far apart the sides end** at this size: the largest relative difference over every epoch's "
            f"losses and the accuracy was {drift(row('2 Ray workers (1 CPU each)'))} with 2 workers and "
            f"{drift(row('1 Ray worker'))} with 1. Two workers add their "
            "half-batches' gradients in another order than one process; over the benchmark's thousands of steps "
            f"the rounding compounds into a slightly different model (`pairs.toml`'s bench rule allows "
            f"{spec['bench_agree']['rel_tol']:g}), where the smoke size's few hundred stay within "
            f"{spec['agree']['rel_tol']:g}. One worker takes the baseline's whole batches.\n"
            f"- **The LoRA fine-tune** on 2 workers: {lora['speedup']:.2f}x. Each step's 8 reviews are split 4 and 4 "
            "over two processes of one thread each, which on 2 cores is no more compute than one process on two "
            "threads, and each worker loads SmolLM2 itself.")


def ray_serve_findings(python: str = "3.11") -> str:
    """What ray_serve/benchmarks/c32_servers.py's four set-ups say, in ratios from the one run."""
    rows = {row["label"]: row for row in load(f"ray_serve_c32-py{python}")["rows"]}
    one, two = rows["FastAPI + uvicorn, 1 process"], rows["FastAPI + uvicorn --workers 2"]
    serve, fast = rows["Ray Serve, @serve.batch"], rows["Ray Serve, @serve.batch, RAY_SERVE_THROUGHPUT_OPTIMIZED=1"]
    ratio = serve["throughput_rps"] / one["throughput_rps"]
    fast_ratio = fast["throughput_rps"] / serve["throughput_rps"]
    return (f"- **Serve with `@serve.batch` against one uvicorn process**: {ratio:.2f}x the throughput, p99 "
            f"{serve['p99_ms']:,.0f} ms against {one['p99_ms']:,.0f} ms. Against two uvicorn workers, the stronger "
            f"baseline, Serve reaches {serve['throughput_rps'] / two['throughput_rps']:.2f}x.\n"
            "- **The hops cost CPU the model needs.** A Serve request goes client -> HTTP proxy -> ingress replica "
            "(validation, the choice of version: the composition lesson) -> model replica (the batch), each a "
            "process boundary; on 2 cores the proxy, the ingress and the load-test client take CPU from the model "
            "replicas, while uvicorn's workers spend all of theirs on the model. A batch of 32 also forms only "
            "when 32 requests wait at one replica.\n"
            f"- **The throughput-optimised mode** gives {fast_ratio:.2f}x the default mode's throughput here: "
            + ("the ingress replica takes HTTP itself and gRPC carries the calls between deployments, so a "
               "request costs fewer hops. " if fast_ratio >= 1 else "")
            + "It runs user code on the replica's event loop, where a batched forward pass holds up request "
            "handling: try it with your own model before turning it on.\n"
            "- **Where Serve pays**: the hop cost is fixed per request while the model's grows with the input and "
            "the model, and on a real deployment the proxy and the clients have cores of their own. What Serve "
            "adds at any size is two model versions behind one API, each with its own replica count, autoscaling, "
            "and a config file for in-place upgrades.")


def ray_serve_ramp(python: str = "3.11") -> str:
    """ray_serve/benchmarks/load_ramp.py's per-stage table. Left out: its per-second replica timeline, and its
    Serve / baseline ratio at concurrency 32 (c32_servers.py measures that, with more requests per set-up)."""
    report = load(f"ray_serve_load_ramp-py{python}")
    lines = report["table"]
    end = next((i for i, line in enumerate(lines) if line.startswith("Replica timeline")), len(lines))
    text = "\n".join(line for line in lines[:end]
                     if not line.startswith(("# ", "Ray Serve / baseline"))).strip("\n")
    at32 = [stage for stage in report["stages"] if stage["concurrency"] == 32]
    if len(at32) >= 2 and at32[-1]["replicas_min"] > at32[0]["replicas_max"]:
        text += (f"\n\nThe same concurrency 32 twice: {at32[0]['throughput_rps']:.1f} requests/s on the way up with "
                 f"{at32[0]['replicas_max']} `ClassifierV1` replica, {at32[-1]['throughput_rps']:.1f} on the way down "
                 f"with {at32[-1]['replicas_min']}, which the autoscaler added at the peak and had not yet removed.")
    return text


def vllm_findings(python: str = "3.11") -> str:
    """What llm_throughput.py's rows mean, beyond the speedups its table already states."""
    report = load(f"vllm_examples_llm_throughput-py{python}")
    online = report["online"]
    lines = []
    lines.append("- **Why the batch job gains little here**: on two CPU cores a 135M-parameter model in float32 is "
                 "bound by matrix arithmetic that HF's padded batches already keep busy, so continuous batching "
                 "and the paged KV cache have little idle time to win back; the gap between the two offline rows "
                 "is the padding `generate()` wastes once answers end. On GPUs vLLM's kernels and far larger "
                 "batches pay more (not measured: the machine these figures come from has no GPU).")
    lines.append(f"- **The server's first token** comes after {online['ray_ttft_p50_ms']:,.0f} ms (p50) on Ray "
                 f"Serve LLM and {online['baseline_ttft_p50_ms']:,.0f} ms on the baseline, which runs one "
                 "`generate()` at a time, so a request waits for all those ahead of it.")
    lines.append("- **What Ray costs and buys.** Ray's rows pay for actors for every stage, or a proxy and an "
                 "ingress replica, on the engine's two cores, and a longer start. They buy the same script over "
                 "sharded files of any size, engine replicas across a cluster's GPUs (`--engines N`), and "
                 "autoscaled server replicas deployed from a config file. Continuous batching is vLLM's, with or "
                 "without Ray.")
    return "\n".join(lines)


# What the Ray LLM server replaces: the parts of the hand-written baseline server, by the names that define them,
# and the Ray configuration that does the same.
BASELINE_SERVER_PARTS = {
    "request schemas and validation": (("ChatMessage", "StreamOptions", "SamplingFields", "ChatCompletionRequest",
                                        "CompletionRequest"),
                                       "`build_openai_app` (Ray Serve LLM's request models) and vLLM's checks"),
    "OpenAI error bodies": (("APIError", "error_response"), "`build_openai_app`'s error handling"),
    "token streaming out of generate()": (("TokenQueue", "StopWhenCancelled", "Generator"),
                                          "the vLLM engine of each replica (`LLMConfig`)"),
    "routes and server-sent events": (("event", "usage", "build_app"),
                                      "`build_openai_app`'s ingress deployment"),
    "uvicorn in a thread, one process": (("start_server", "stop_server"),
                                         "`serve.start` and `serve.run`; replicas from `deployment_config`"),
}


def definition_lines(path: Path, names: tuple[str, ...]) -> int:
    """Lines of the top-level classes and functions called `names` in a Python file, decorators included."""
    import ast

    tree = ast.parse(path.read_text())
    return sum(node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1
               for node in tree.body if getattr(node, "name", None) in names)


def openai_server_lines() -> str:
    """The hand-written parts of the baseline server, counted in the file, and what replaces each on the Ray side."""
    baseline = ROOT / "vllm_examples" / "baseline" / "openai_server.py"
    ray = ROOT / "vllm_examples" / "ray_version" / "openai_server.py"
    lines = ["| the baseline's part | its definitions | lines | on the Ray side |", "|---|---|---:|---|"]
    for what, (names, replaced_by) in BASELINE_SERVER_PARTS.items():
        lines.append(f"| {what} | {', '.join(f'`{n}`' for n in names)} | {definition_lines(baseline, names)} "
                     f"| {replaced_by} |")
    lines.append(f"\nWhole files: {len(baseline.read_text().splitlines())} and {len(ray.read_text().splitlines())} "
                 f"lines; the Ray file's serving functions take "
                 f"{definition_lines(ray, ('build_app', 'start_server', 'stop_server'))}.")
    return "\n".join(lines)


def metric_vs_time(python: str = "3.11") -> str:
    """ray_tune/benchmarks/metric_vs_time.py's table as the script printed it, and the sentence it ends with (made
    here from the report's numbers, as the script makes it)."""
    from ray_tune.benchmarks.metric_vs_time import sentence

    report = load(f"ray_tune_metric_vs_time-py{python}")
    return "\n".join([*report["table"][:-1], sentence(report)])


def memory_curve(python: str = "3.11") -> str:
    """ray_data/benchmarks/memory_curve.py's table and cap runs, as the script printed them."""
    return "\n".join(load(f"ray_data_memory_curve-py{python}")["table"])


def memory_findings(python: str = "3.11") -> str:
    """The whole process tree's peak, compared at each size (the driver's is in the table)."""
    curve = load(f"ray_data_memory_curve-py{python}")["curve"]
    parts = []
    for rows in sorted({r["rows"] for r in curve}):
        tree = {r["side"]: r["tree_peak_pss_mb"] for r in curve if r["rows"] == rows}
        more = "Ray" if tree["ray_version"] > tree["baseline"] else "pandas"
        parts.append(f"at {rows:,} rows {more} uses more ({tree['ray_version']:,} MB for Ray, "
                     f"{tree['baseline']:,} MB for pandas)")
    return "Counting every process (for Ray: GCS, raylet, workers, object store), " + "; ".join(parts) + "."


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "record" or len(argv) > 2:
        print("usage: python -m tools.docs record [REPORTS_FOLDER]   (default: reports/)", file=sys.stderr)
        return 2
    source = Path(argv[1]) if len(argv) == 2 else ROOT / "reports"
    if not source.is_dir():
        print(f"error: {source} is not a folder; give the reports/ folder of a checkout", file=sys.stderr)
        return 2
    written = record(source)
    if not written:
        print(f"error: no reports to record in {source}; run make setup, make test or make demo first",
              file=sys.stderr)
        return 1
    for path in written:
        print(f"recorded {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def on_hosts(report: dict) -> str:
    """When, where and between which test hosts (tools/netns.py) a cluster report was measured."""
    return f"{stamp(report)}; hosts {' and '.join(report['hosts'])}"


def link_cut(python: str = "3.11") -> str:
    """ray_core/cluster/README.md: what the network-fault test measured (tests/test_cluster.py)."""
    report = load(f"cluster_link_cut-py{python}")
    settings = ", ".join(f"`{name}={value}`" for name, value in report["settings"].items())
    return (f"Measured by that test ({on_hosts(report)}, bootstrap_auc.py "
            f"`{' '.join(report['args'])}`; {settings}): the node was declared dead "
            f"{report['cut_to_node_dead_seconds']:.1f} s "
            f"after its link went down, and the answer, identical to the baseline's, came "
            f"{report['cut_to_answer_seconds']:.1f} s after it.")


def head_restart(python: str = "3.11") -> str:
    """ray_core/cluster/head_node_ft.md: what the GCS fault tolerance test measured (tests/test_cluster.py)."""
    report = load(f"cluster_head_restart-py{python}")
    return (f"Measured by that test ({on_hosts(report)}, a load of "
            f"{report['load']['seconds']} s at concurrency {report['load']['concurrency']}): "
            f"{report['requests_ok']:,} requests answered and {report['requests_failed']} failed; the head node "
            f"answered again {report['kill_to_head_up_seconds']:.1f} s after the kill (its `ray start`), and the "
            f"app was `RUNNING` again {report['kill_to_app_running_seconds']:.1f} s after it (latency p99 over "
            f"the whole load {report['latency_p99_ms']:.0f} ms).")


def slow_link(python: str = "3.11") -> str:
    """ray_core/cluster/network_faults.md: ray_core/benchmarks/slow_link.py's table."""
    report = load(f"ray_core_slow_link-py{python}")
    return "\n".join([f"Measured ({on_hosts(report)}, "
                       f"{report['repeats']} transfers each, one after another):", "", *report["table"]])
