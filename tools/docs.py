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
RECORDED = ("install", "test", "test-slow", "demo", "bench", "workshop_times")


def load(name: str) -> dict:
    return json.loads((REPORTS / f"{name}.json").read_text())


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def report_python(report: dict) -> str:
    return report.get("python") or report["versions"]["python"]


def record(source: Path = ROOT / "reports") -> list[Path]:
    """Copies reports/NAME.json to docs/reports/NAME-pyX.Y.json, for each report this machine has written."""
    written = []
    for name in RECORDED:
        path = source / f"{name}.json"
        if path.exists():
            target = REPORTS / f"{name}-py{minor(report_python(json.loads(path.read_text())))}.json"
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
    return (f"Set-up took {install['seconds'] / 60:.0f} minutes on a fresh clone ({install['machine']['cores']} cores, "
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
    return f"`make demo`'s {', '.join(modules)} rows: {agreed} of {len(report['rows'])} agree"


def verified_platforms() -> str:
    """A Markdown table: per Python version, what set-up installed and which commands passed, with the machine."""
    lines = ["| Python | date, machine | torch set-up installed | set-up | `.venv` | then |",
             "|---|---|---|---:|---:|---|"]
    for path in sorted(REPORTS.glob("install-py*.json"), key=lambda p: [int(x) for x in p.stem.removeprefix("install-py").split(".")]):
        install = json.loads(path.read_text())
        py = minor(install["python"])
        checks = [test_result(load(f"{name}-py{py}")) for name in ("test", "test-slow")
                  if (REPORTS / f"{name}-py{py}.json").exists()]
        if (REPORTS / f"demo-py{py}.json").exists():
            checks.append(demo_result(load(f"demo-py{py}")))
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


def workshop_times_stamp(python: str = "3.11") -> str:
    report = load(f"workshop_times-py{python}")
    return f"{report['date']}, {report['machine']}"


def test_times(python: str = "3.11") -> str:
    """One sentence: the whole suite on a fresh clone, as CI runs it."""
    fast, slow = load(f"test-py{python}"), load(f"test-slow-py{python}")
    return (f"On a fresh clone ({fast['date']}, {fast['machine']}, Python {fast['python']}): "
            f"{test_result(fast)} (budget 600 s), then {test_result(slow)}.")


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
