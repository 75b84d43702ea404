"""The READMEs' measured figures, written from the committed reports in docs/reports/.

    python -m tools.docs record   # copy this machine's reports/*.json into docs/reports/, named by Python version
    make docs                     # rewrite every generated block in the Markdown files (cog -r)

A generated block in a Markdown file calls a function of this module between cog markers; tests/test_docs.py
fails when a block differs from what the committed reports give (`cog --check`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "docs" / "reports"
# What set-up and the test runs write into reports/ (git-ignored), and what `record` keeps of them.
RECORDED = ("install", "test", "test-slow", "demo", "bench", "workshop_times", "crossover",
            "ray_tune_metric_vs_time", "ray_data_memory_curve")


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
    """Copies reports/NAME.json to docs/reports/ under recorded_name(), for each report this machine has written."""
    written = []
    for name in RECORDED:
        path = source / f"{name}.json"
        report = json.loads(path.read_text()) if path.exists() else None
        if report is not None and report.get("fresh_venv", True):  # a set-up re-run measures no install
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
            f"{install['models_cache_mb']} MB of converted model in `.cache/`.")


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


def verified_platforms() -> str:
    """A Markdown table: per Python version, what set-up installed and which commands passed, with the machine."""
    lines = ["| Python | date, machine | torch set-up installed | set-up | `.venv` | then |",
             "|---|---|---|---:|---:|---|"]
    by_version = lambda p: [int(x) for x in p.stem.removeprefix("install-py").split(".")]  # noqa: E731
    for path in sorted(REPORTS.glob("install-py*.json"), key=by_version):
        install = json.loads(path.read_text())
        py = minor(install["python"])
        checks = [test_result(load(f"{name}-py{py}")) for name in ("test", "test-slow")
                  if (REPORTS / f"{name}-py{py}.json").exists()]
        checks += [demo_result(json.loads(p.read_text())) for p in sorted(REPORTS.glob(f"demo*-py{py}.json"))]
        machine = install["machine"]
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


def demo_seconds(python: str = "3.11") -> str:
    return f"{load(f'demo-py{python}')['total_seconds']:.0f} s"


def module_seconds(module: str, python: str = "3.11") -> str:
    """Wall-clock seconds of a module's workshop commands, both sides (tools/time_workshop.py)."""
    times = load(f"workshop_times-py{python}")["seconds"]
    return f"{sum(v for k, v in times.items() if k.startswith(module + '/')):.0f} s"


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


def script_output(module: str, pair: str, side: str = "ray_version", python: str = "3.11") -> str:
    """What one side printed in the recorded `make demo` run, as a fenced block."""
    from tools.tour import tail

    # the tour stored it as a terminal shows it; root=None: the same text wherever this repository is cloned
    output = tail(tour_row(load(f"demo-py{python}"), module, pair)["output"][side], root=None).strip("\n")
    return f"```\n{output}\n```"


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


# The workshop's targets for ray_core at benchmark size (on 2 cores the physical limit is 2.0x).
TARGET_VS_SEQUENTIAL, TARGET_VS_POOL = 1.8, 0.95


def ray_core_targets(python: str = "3.11") -> str:
    report = bench_report("ray_core", python)
    sequential = tour_row(report, "ray_core", "bootstrap_auc", "vs sequential")
    pool = tour_row(report, "ray_core", "bootstrap_auc", "vs Pool")
    pool_over_loop = sequential["baseline_seconds"] / pool["baseline_seconds"]
    met = lambda ok: "met" if ok else "not met"  # noqa: E731
    return (f"Ray tasks against a sequential loop: {sequential['speedup']:.2f}x (target {TARGET_VS_SEQUENTIAL}x, "
            f"{met(sequential['speedup'] >= TARGET_VS_SEQUENTIAL)}); against a Pool: {pool['speedup']:.2f}x "
            f"(target at least {TARGET_VS_POOL:.2f}x, {met(pool['speedup'] >= TARGET_VS_POOL)}). The Pool itself "
            f"reaches {pool_over_loop:.2f}x over the loop on the same machine.")


def metric_vs_time(python: str = "3.11") -> str:
    """ray_tune/benchmarks/metric_vs_time.py's table and its verdict, as the script printed them."""
    return "\n".join(load(f"ray_tune_metric_vs_time-py{python}")["table"])


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
    if argv != ["record"]:
        print("usage: python -m tools.docs record", file=sys.stderr)
        return 2
    written = record()
    if not written:
        print("error: no reports in reports/; run make setup, make test or make demo first", file=sys.stderr)
        return 1
    for path in written:
        print(f"recorded {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
