"""The pair tour: run every baseline and its Ray twin, check that they agree, print one table.

    python -m tools.tour                 # smoke size, writes reports/demo.json and reports/demo.md
    python -m tools.tour --bench         # benchmark size, writes reports/bench.{json,md,png}
    python -m tools.tour --module ray_core

Pairs are discovered from the files: every M/baseline/NAME.py with a twin M/ray_version/NAME.py, and an
entry [NAME] in M/pairs.toml that says how the two results must agree. One failing pair does not stop
the others; the exit code is 1 when any pair errors or disagrees.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workshop import cli

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["ray_core", "ray_data", "ray_train", "ray_serve", "ray_tune", "vllm_examples"]
SIDES = cli.SIDES
# requirements-vllm.txt installs vLLM's CPU build only where it has one.
NO_VLLM = "vLLM is not installed (its CPU build is for Linux x86-64 only; see requirements-vllm.txt)"


@dataclass
class Pair:
    module: str
    name: str
    spec: dict[str, Any]
    root: Path = ROOT

    @property
    def title(self) -> str:
        return self.spec.get("title", self.name)

    def script(self, side: str) -> Path:
        return self.root / self.module / side / f"{self.name}.py"

    def rows(self, bench: bool) -> list[dict[str, Any]]:
        """The table rows this pair produces. Demo: the smoke row, then one per demo_rows entry (a size where
        the lesson shows in seconds). Bench: one per bench_rows entry, or the bench arguments alone."""
        base_args = list(self.spec["bench"] if bench else self.spec["smoke"])
        smoke_row = {"label": "", "baseline": base_args, "ray_version": base_args, "scripts": {}, "env": {},
                     "note": "" if bench else self.spec.get("smoke_note", "")}  # smoke_note explains smoke size
        entries = self.spec.get("bench_rows" if bench else "demo_rows", [])
        rows = [] if bench and entries else [smoke_row]
        for entry in entries:
            args = list(entry.get("args", base_args))
            rows.append({
                "label": entry["label"],
                "baseline": args + list(entry.get("baseline_args", [])),
                "ray_version": args + list(entry.get("ray_args", [])),
                # another script in the baseline's place (a mode the baseline itself does not need), and
                # environment variables for the baseline's process
                "scripts": {"baseline": self.root / self.module / entry["baseline_script"]}
                if "baseline_script" in entry else {},
                "env": {"baseline": dict(entry["baseline_env"])} if "baseline_env" in entry else {},
                "note": entry.get("note", ""),
            })
        return rows


def load_script(path: Path):
    """Import a script as a module: its functions, without running its main() (the tests, and a benchmark that
    runs a baseline's main() with one function replaced)."""
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"_script_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does: pydantic resolves the script's annotations through it
    spec.loader.exec_module(module)
    return module


class PairConfigError(Exception):
    pass


def discover(modules: list[str] | None = None, root: Path = ROOT) -> list[Pair]:
    """Every pair of every module, in module order. Raises PairConfigError on a twin or entry missing."""
    pairs = []
    for module in modules or MODULES:
        folder = root / module
        if not (folder / "baseline").is_dir():
            continue
        names = {
            side: {p.stem for p in (folder / side).glob("*.py") if not p.name.startswith("_")} for side in SIDES
        }
        if names["baseline"] != names["ray_version"]:
            lonely = sorted(names["baseline"] ^ names["ray_version"])
            raise PairConfigError(f"{module}: scripts without a twin of the same name: {', '.join(lonely)}")
        config_path = folder / "pairs.toml"
        if not config_path.exists():
            raise PairConfigError(f"{module}: no pairs.toml (it says how each pair's results must agree)")
        config = tomllib.loads(config_path.read_text())
        for name in sorted(names["baseline"]):
            if name not in config:
                raise PairConfigError(f"{module}/pairs.toml: no [{name}] entry for {module}/*/{name}.py")
            spec = config[name]
            for key in ("agree", "smoke", "bench"):
                if key not in spec:
                    raise PairConfigError(f"{module}/pairs.toml: [{name}] has no '{key}'")
            pairs.append(Pair(module, name, spec, root))
    return pairs


def compare(baseline: Any, ray: Any, rule: Any, path: str = "answer") -> list[str]:
    """Differences between two answers under a pair's agreement rule; an empty list means they agree. Two dicts
    must have the same keys, whatever the rule."""
    if isinstance(baseline, dict) and isinstance(ray, dict) and baseline.keys() != ray.keys():
        return [f"{path}: keys differ: {sorted(baseline.keys() ^ ray.keys())}"]
    if isinstance(rule, dict) and "metric" in rule:
        name, max_diff = rule["metric"], float(rule["max_diff"])
        try:
            a, b = float(baseline[name]), float(ray[name])
        except (KeyError, TypeError, ValueError):
            return [f"{path}.{name} missing or not a number on one side"]
        exact = [d for key in rule.get("exact", [])  # keys that must also be equal, value for value
                 for d in (compare(baseline[key], ray[key], "exact", f"{path}.{key}")
                           if key in baseline and key in ray else [f"{path}.{key} missing on one side"])]
        return exact + ([] if abs(a - b) <= max_diff else [f"{path}.{name}: {a:.6g} vs {b:.6g} (allowed {max_diff})"])
    if isinstance(rule, dict) and "match_fraction" in rule:
        name, needed = rule["list"], float(rule["match_fraction"])
        a, b = (baseline or {}).get(name), (ray or {}).get(name)
        if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b) or not a:
            return [f"{path}.{name} missing, empty or of different lengths"]
        same = sum(x == y for x, y in zip(a, b)) / len(a)
        rest = compare({k: v for k, v in baseline.items() if k != name},
                       {k: v for k, v in ray.items() if k != name}, "exact", path)
        return rest + ([] if same >= needed else [f"{path}.{name}: {same:.0%} of items equal (needed {needed:.0%})"])
    if isinstance(baseline, dict) and isinstance(ray, dict):
        return [d for key in baseline for d in compare(baseline[key], ray[key], rule, f"{path}.{key}")]
    if isinstance(baseline, list) and isinstance(ray, list):
        if len(baseline) != len(ray):
            return [f"{path}: {len(baseline)} vs {len(ray)} items"]
        diffs = [d for i, (a, b) in enumerate(zip(baseline, ray)) for d in compare(a, b, rule, f"{path}[{i}]")]
        return diffs[:5] + ([f"... and {len(diffs) - 5} more"] if len(diffs) > 5 else [])
    numbers = (int, float)
    if isinstance(rule, dict) and isinstance(baseline, numbers) and isinstance(ray, numbers):
        ok = math.isclose(baseline, ray, rel_tol=rule.get("rel_tol", 0.0), abs_tol=rule.get("abs_tol", 0.0))
        return [] if ok else [f"{path}: {baseline!r} vs {ray!r}"]
    return [] if baseline == ray and type(baseline) is type(ray) else [f"{path}: {baseline!r} vs {ray!r}"]


def max_relative_difference(baseline: Any, ray: Any) -> float | None:
    """The largest relative difference between the numbers two answers hold at the same place (None: no numbers
    in common): how far apart the sides are, whatever the pair's rule allows."""
    if isinstance(baseline, dict) and isinstance(ray, dict):
        found = [max_relative_difference(baseline[k], ray[k]) for k in baseline.keys() & ray.keys()]
    elif isinstance(baseline, list) and isinstance(ray, list) and len(baseline) == len(ray):
        found = [max_relative_difference(a, b) for a, b in zip(baseline, ray)]
    elif (isinstance(baseline, (int, float)) and isinstance(ray, (int, float))
          and not isinstance(baseline, bool) and not isinstance(ray, bool)):
        scale = max(abs(baseline), abs(ray))
        return abs(baseline - ray) / scale if scale else 0.0
    else:
        return None
    found = [d for d in found if d is not None]
    return max(found) if found else None


@dataclass
class Run:
    result: dict[str, Any] | None = None
    wall: float = 0.0
    error: str = ""
    log: Path | None = None


@dataclass
class Row:
    module: str
    pair: str
    label: str
    title: str
    baseline_seconds: float | None = None
    ray_seconds: float | None = None
    speedup: float | None = None
    agree: bool = False
    problems: list[str] = field(default_factory=list)
    note: str = ""  # why Ray is slower here, when it is (pairs.toml: smoke_note, or a row's note)
    example: str = ""  # what the Ray side's model said (result.json details.example), shown under the table
    output: dict[str, str] = field(default_factory=dict)  # what each side printed: the READMEs' expected output
    max_relative_difference: float | None = None  # the largest |a - b| / max(|a|, |b|) over the answers' numbers


def run_script(
    script: Path, root: Path, args: list[str], output: Path, timeout: float, env: dict[str, str] | None
) -> Run:
    """Run one script as a person would, from the repository root, and read its result.json."""
    output.mkdir(parents=True, exist_ok=True)
    (output / cli.RESULT_FILE).unlink(missing_ok=True)
    log = output.parent / f"{output.name}.log"
    command = [sys.executable, str(script.relative_to(root)), *args, "--output", str(output)]
    started = time.perf_counter()
    try:
        with open(log, "w") as log_file:
            proc = subprocess.run(
                command, cwd=root, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout, env=env
            )
    except subprocess.TimeoutExpired:
        return Run(wall=time.perf_counter() - started, error=f"timed out after {timeout:.0f} s", log=log)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        return Run(wall=wall, error=f"exit {proc.returncode}: {' '.join(tail)[:200]}", log=log)
    result_path = output / cli.RESULT_FILE
    if not result_path.exists():
        return Run(wall=wall, error=f"exit 0 but no {cli.RESULT_FILE}", log=log)
    return Run(result=json.loads(result_path.read_text()), wall=wall, log=log)


def run_pair(pair: Pair, bench: bool, out_root: Path, timeout: float, env: dict[str, str] | None = None) -> list[Row]:
    rows, cache = [], {}
    for i, spec in enumerate(pair.rows(bench)):
        row = Row(pair.module, pair.name, spec["label"], pair.title, note=spec.get("note", ""))
        runs = {}
        for side in SIDES:
            script, side_env = spec["scripts"].get(side, pair.script(side)), spec["env"].get(side, {})
            key = (side, str(script), tuple(spec[side]), tuple(sorted(side_env.items())))
            if key not in cache:
                output = out_root / pair.module / pair.name / f"{side}-{i}"
                label = f" [{spec['label']}]" if spec["label"] else ""
                shown = " ".join([*(f"{k}={v}" for k, v in side_env.items()), str(script.relative_to(pair.root))])
                print(f"  {shown}{label} {' '.join(spec[side])}", flush=True)
                run_env = {**(env if env is not None else os.environ), **side_env} if side_env else env
                cache[key] = run_script(script, pair.root, spec[side], output, timeout, run_env)
            runs[side] = cache[key]
        for side in SIDES:
            if runs[side].log is not None and runs[side].log.exists():
                row.output[side] = tail(runs[side].log.read_text(errors="replace"))
            if runs[side].error:
                row.problems.append(f"{side}: {runs[side].error} (log: {runs[side].log})")
        if not row.problems:
            base, ray = runs["baseline"].result, runs["ray_version"].result
            row.baseline_seconds, row.ray_seconds = base["seconds"], ray["seconds"]
            row.speedup = base["seconds"] / ray["seconds"] if ray["seconds"] > 0 else None
            rule = pair.spec.get("bench_agree", pair.spec["agree"]) if bench else pair.spec["agree"]
            row.problems = compare(base["answer"], ray["answer"], rule)
            row.agree = not row.problems
            row.max_relative_difference = max_relative_difference(base["answer"], ray["answer"])
            row.example = example_line(ray.get("details", {}).get("example"))
        rows.append(row)
    return rows


PROGRESS = re.compile(r"^(.*?):\s+\d+%\|")  # a tqdm bar: "replicates:  6%|..."


def tail(text: str, limit: int = 4000, root: Path | None = ROOT) -> str:
    """The end of a script's output as a terminal shows it (colours dropped, a progress bar's last state, paths
    under `root` relative to it), whole lines, at most `limit` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if root is not None:
        text = text.replace(f"{root}/", "")
    lines: list[str] = []
    for line in (line.rstrip("\r").rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")):
        bar = PROGRESS.match(line)
        if bar and lines and PROGRESS.match(lines[-1]) and PROGRESS.match(lines[-1]).group(1) == bar.group(1):
            lines[-1] = line  # a progress bar redraws itself in place
        else:
            lines.append(line)
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    return text[-limit:].split("\n", 1)[-1]


def example_line(example: Any) -> str:
    """`details.example` of a result, {"input": ..., "output": ...}, as one short line (empty if absent)."""
    if not isinstance(example, dict) or "output" not in example:
        return ""
    clip = lambda text, n: (text if len(text) <= n else text[: n - 3] + "...").replace("\n", " ")  # noqa: E731
    return f"{clip(str(example.get('input', '')), 70)!r} -> {clip(str(example['output']), 90)!r}"


def fmt(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


TABLE_HEADER = [
    "| module | pair | baseline s | Ray s | speedup | agree | why Ray is slower here |",
    "|---|---|---:|---:|---:|---|---|",
]


def table_row(r: Row) -> str:
    name = f"{r.pair} ({r.label})" if r.label else r.pair
    agree = "yes" if r.agree else ("ERROR" if r.baseline_seconds is None else "NO")
    why = r.note if r.speedup is not None and r.speedup < 1.0 else ""
    return (f"| {r.module} | {name} | {fmt(r.baseline_seconds)} | {fmt(r.ray_seconds)} | {fmt(r.speedup, 'x')} "
            f"| {agree} | {why} |")


def markdown_table(rows: list[Row]) -> str:
    return "\n".join(TABLE_HEADER + [table_row(r) for r in rows])


def summary(rows: list[Row], total: float) -> str:
    """What the tour prints at the end (the README's expected output is generated from the same function)."""
    lines = [markdown_table(rows)]
    examples = [r for r in rows if r.example]
    if examples:
        lines.append("\nWhat the real models answered (Ray side; the baseline agreed as the table says):")
        lines += [f"  {r.module}/{r.pair}: {r.example}" for r in examples]
    lines += [f"{r.module}/{r.pair}{' (' + r.label + ')' if r.label else ''}: {p}" for r in rows for p in r.problems]
    lines.append(f"\nTour finished in {total:.0f} s. Seconds are work time measured inside each script "
                 "(Ray start-up excluded); speedup = baseline / Ray.")
    return "\n".join(lines)


def write_chart(rows: list[Row], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.speedup is not None]
    if not measured:
        return
    labels = [f"{r.module}/{r.pair}" + (f"\n{r.label}" if r.label else "") for r in measured]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(measured) + 1.5))
    ax.barh(labels, [r.speedup for r in measured], color=["tab:green" if r.speedup >= 1 else "tab:red" for r in measured])
    ax.axvline(1.0, color="black", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("speedup of the Ray version (baseline work time / Ray work time)")
    ax.set_title(f"make bench on {machine}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_description() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs{', ' + model if model else ''}, {platform.system()} {platform.machine()}"


def stamp() -> dict[str, Any]:
    """What every report carries about where and when it was measured (tools/docs.py prints it)."""
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": machine_description(),
            "python": platform.python_version(), "versions": cli.versions()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="benchmark sizes instead of smoke sizes")
    parser.add_argument("--module", action="append", choices=MODULES, help="only this module (repeatable)")
    parser.add_argument("--reports", type=Path, default=None, help="folder for the table files (default: reports/)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script (default 300; bench 1800)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # the tests' fake repositories
    args = parser.parse_args(argv)
    timeout = args.timeout or (1800.0 if args.bench else 300.0)
    kind = "bench" if args.bench else "demo"

    versions = cli.versions()
    machine = machine_description()
    print(f"Ray workshop tour ({kind}) on {machine}")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    try:
        pairs = discover(args.module, args.root)
    except PairConfigError as exc:
        cli.fail(str(exc))
    if not pairs:
        cli.fail("no pairs found; run the tour from the repository root")
    if not args.bench:
        for pair in [p for p in pairs if not p.spec.get("demo", True)]:
            print(f"{pair.module}/{pair.name}: in make bench, not in the demo (pairs.toml: demo = false)")
        pairs = [p for p in pairs if p.spec.get("demo", True)]
    if importlib.util.find_spec("vllm") is None and any(p.module == "vllm_examples" for p in pairs):
        print(f"vllm_examples: left out, {NO_VLLM}")
        pairs = [p for p in pairs if p.module != "vllm_examples"]

    started = time.perf_counter()
    first_row = None  # seconds until the first row is on screen
    rows: list[Row] = []
    out_root = args.root / "outputs" / "tour" / kind
    reports = args.reports or args.root / "reports"
    for number, pair in enumerate(pairs, 1):
        print(f"\n[{number}/{len(pairs)}] {pair.module}/{pair.name}: {pair.title}", flush=True)
        finished = run_pair(pair, args.bench, out_root, timeout)
        rows.extend(finished)
        for row in finished:  # each row as soon as its pair is done; the whole table again at the end
            print(f"  {table_row(row)}", flush=True)
        first_row = first_row or round(time.perf_counter() - started, 1)
    total = time.perf_counter() - started

    table = markdown_table(rows)
    problems = [(r, p) for r in rows for p in r.problems]
    examples = [r for r in rows if r.example]
    print()
    print(summary(rows, total))

    reports.mkdir(parents=True, exist_ok=True)
    report = {
        "kind": kind,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": machine,
        "versions": versions,
        "total_seconds": round(total, 1),
        "first_row_seconds": first_row,
        "rows": [r.__dict__ for r in rows],
    }
    (reports / f"{kind}.json").write_text(json.dumps(report, indent=2) + "\n")
    (reports / f"{kind}.md").write_text(
        f"# Tour ({kind})\n\nMachine: {machine}  \nVersions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"\n\n{table}\n"
        + "".join(f"\n- {r.module}/{r.pair}: {p}" for r, p in problems)
        + ("\n\nWhat the real models answered (Ray side):\n" if examples else "")
        + "".join(f"\n- {r.module}/{r.pair}: {r.example}" for r in examples)
        + "\n"
    )
    if args.bench:
        write_chart(rows, reports / "bench.png", machine)
    print(f"Reports: {reports / kind}.json, .md" + (", .png" if args.bench else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
