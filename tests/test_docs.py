"""The measured figures in the Markdown files are what the committed reports in docs/reports/ give (make docs)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tools import docs
from tools.tour import MODULES

ROOT = Path(__file__).resolve().parent.parent
# A measured figure: a number with a unit of time, speed, size or share. Outside a generated block it is typed
# by hand, so it fails; a figure belongs in a report, and the README takes it from there through tools/docs.py.
MEASURED = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:ms|s|x|req/s|tokens/s|MB|GB|%)(?![\w/])")
GENERATED = re.compile(r"^[^\n]*\[\[\[cog.*?\[\[\[end\]\]\][^\n]*$", re.S | re.M)
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
# Word limits: the top README, then every module README and the cluster guide.
MODULE_READMES = [f"{module}/README.md" for module in MODULES]
WORD_LIMITS = {"README.md": 1500, **{name: 2000 for name in MODULE_READMES}, "ray_core/cluster/README.md": 2000}
WORKSHOP_SECTION_LIMIT = 400  # "In the workshop": one screen


def markdown_files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    return tracked.stdout.split()


def generated_files() -> list[str]:
    return [name for name in markdown_files() if "[[[cog" in (ROOT / name).read_text()]


def test_every_generated_block_matches_the_committed_reports():
    files = generated_files()
    assert "README.md" in files
    proc = subprocess.run([sys.executable, "-m", "cogapp", "--check", "--diff", "-I", ".", *files], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "run `make docs`:\n" + proc.stdout + proc.stderr


def test_record_names_each_report_by_its_python(tmp_path, monkeypatch):
    source = tmp_path / "reports"
    source.mkdir()
    (source / "install.json").write_text(json.dumps({"python": "3.12.1"}))
    rows = [{"module": "ray_core"}, {"module": "ray_data"}]
    (source / "demo.json").write_text(json.dumps({"versions": {"python": "3.13.0"}, "rows": rows}))
    (source / "bench.json").write_text(json.dumps({"versions": {"python": "3.11.7"}, "rows": rows[:1]}))
    (source / "test.json").write_text(json.dumps({"python": "3.11.7", "clean_checkout": False}))  # not recorded
    monkeypatch.setattr(docs, "REPORTS", tmp_path / "docs")
    written = docs.record(source)
    assert sorted(p.name for p in written) == ["bench-ray_core-py3.11.json", "demo-py3.13.json",
                                               "install-py3.12.json"]


def test_no_measured_figure_outside_a_generated_block():
    typed = [f"{name}: {match.group(0)!r} in ...{match.string[max(0, match.start() - 40):match.end() + 10]!r}"
             for name in markdown_files() for match in MEASURED.finditer(GENERATED.sub("", (ROOT / name).read_text()))]
    assert not typed, "put these figures in a report and generate them (tools/docs.py):\n" + "\n".join(typed)


def words(markdown: str) -> int:
    """Words as a reader sees them: prose and tables, not code blocks or the generators' source."""
    return len(re.sub(r"<!--.*?-->", "", FENCED.sub("", markdown), flags=re.S).split())


def test_the_readmes_are_short_enough_to_read_in_the_workshop():
    for name, limit in WORD_LIMITS.items():
        text = (ROOT / name).read_text()
        assert words(text) <= limit, f"{name}: {words(text)} words (at most {limit})"
        if name in MODULE_READMES:  # a module README opens with "In the workshop", one screen
            section = text.split("\n## In the workshop\n", 1)[1].split("\n## ", 1)[0]
            assert words(section) <= WORKSHOP_SECTION_LIMIT, f"{name}: In the workshop has {words(section)} words"


def test_the_figure_rule_catches_what_it_should():
    assert [m.group(0) for m in MEASURED.finditer("took 498 s, 1.51x, 4.0 GB, 79%, 30 req/s, 12 steps, v3.11")] \
        == ["498 s", "1.51x", "4.0 GB", "79%", "30 req/s"]
    text = "typed 5 s\n<!-- [[[cog x]]] -->\n6 s\n<!-- [[[end]]] -->\ntyped 7 s\n<!-- [[[cog y]]] -->\n8 s\n<!-- [[[end]]] -->\n"
    assert MEASURED.findall(GENERATED.sub("", text)) == ["5 s", "7 s"]


def test_generated_text_is_the_same_wherever_the_repository_is_cloned():
    """A report recorded in one checkout must render the same in another (CI clones to a new folder)."""
    for name in generated_files():
        assert f"{ROOT}/" not in (ROOT / name).read_text(), f"{name} holds this checkout's absolute path"


def workshop_commands(module: str) -> list[str]:
    """The command lines in the code blocks of a module README's "In the workshop" section."""
    section = (ROOT / module / "README.md").read_text().split("\n## In the workshop\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.splitlines():
            for part in line.split("#", 1)[0].split("&&"):  # a comment, then `make cluster-up && eval ...`
                if part.strip() and not part.strip().startswith("eval "):
                    commands.append(part.strip())
    return commands


def test_the_agenda_times_every_command_the_workshop_sections_ask_for():
    from tools.time_workshop import WORKSHOP

    for module in MODULES:
        steps = WORKSHOP[module]
        timed = {step.command for step in steps} | {step.second for step in steps if step.second}
        asked = workshop_commands(module)
        assert asked, f"{module}/README.md: no commands in In the workshop"
        untimed = [command for command in asked if command not in timed]
        assert not untimed, f"{module}: tools/time_workshop.py does not run {untimed}"
