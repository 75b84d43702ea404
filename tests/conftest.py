"""Test harness: one real two-node Ray cluster for the whole session, and a helper that runs a script
exactly as the README tells a person to (`python M/side/NAME.py ...` from the repository root)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workshop import cluster as local_cluster

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_cluster():
    """Head + worker node, token authentication on; stopped at the end, also after a failure."""
    cluster = local_cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def base_env() -> dict[str, str]:
    """The environment of a person's terminal: no Ray cluster address, no stray test settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240):
    """Run a workshop script from the repository root; return the CompletedProcess (text output)."""
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        cwd=ROOT, env=env or base_env(), capture_output=True, text=True, timeout=timeout,
    )


def load_script(path: str | Path):
    """Import a script as a module (its functions, without running main)."""
    path = ROOT / path
    spec = importlib.util.spec_from_file_location(f"_script_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
