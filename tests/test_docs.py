"""The measured figures in the Markdown files are what the committed reports in docs/reports/ give (make docs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools import docs

ROOT = Path(__file__).resolve().parent.parent


def generated_files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [name for name in tracked.stdout.split() if "[[[cog" in (ROOT / name).read_text()]


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
    (source / "demo.json").write_text(json.dumps({"versions": {"python": "3.13.0"}, "rows": []}))
    monkeypatch.setattr(docs, "REPORTS", tmp_path / "docs")
    written = docs.record(source)
    assert sorted(p.name for p in written) == ["demo-py3.13.json", "install-py3.12.json"]
