"""What every workshop script shares: the common flags, clear errors, timing and the result file.

Both sides of a pair use these helpers identically, so a diff between them shows only the Ray lines.
Nothing here imports Ray (`fail` disconnects a Ray script from its cluster, if Ray is loaded, before it exits).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn


RESULT_FILE = "result.json"
SIDES = ("baseline", "ray_version")  # the two folders of a pair


def make_parser(doc: str, script: str) -> argparse.ArgumentParser:
    """An argparse parser with the flags every script has: --smoke-test, --seed, --output.

    `script` is the script's `__file__`; its name names the default output folder: outputs/NAME, or
    outputs/NAME/SIDE for a script in a baseline/ or ray_version/ folder (as in this repository), so that the two
    sides of a pair do not write over each other.
    """
    path = Path(script).resolve()
    side = path.parent.name if path.parent.name in SIDES else None
    typed = sys.argv[0] if Path(sys.argv[0]).name == path.name else path.name  # the path as it was run
    parser = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0],
        epilog=f"Example: python {typed} --smoke-test",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="tiny problem size that finishes in seconds (for tests and the tour)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the generated data; same seed, same answer")
    parser.add_argument(
        "--output",
        type=absolute_path,
        default=str(Path("outputs", path.stem, *([side] if side else []))),
        help="folder for the result file; a re-run overwrites it",
    )
    parser.set_defaults(started=time.perf_counter())  # not a flag: when the script started (the servers' self-test)
    return parser


def absolute_path(text: str) -> Path:
    """argparse type for --output: made absolute at once. A Ray Job runs in its unpacked working directory, which
    Ray may remove and unpack again while the job runs; a relative path would then point into the removed one."""
    return Path(text).absolute()


def positive_int(text: str) -> int:
    """argparse type for counts: a clear usage error instead of a traceback on 0, -3 or 'ten'."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line that says what is wrong and what to do, and exit non-zero. A Ray script disconnects from Ray
    first (and stops the local Ray it started), so that no log line of Ray's comes after the error."""
    ray = sys.modules.get("ray")
    main = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    in_driver = ray is not None and not Path(main).resolve().is_relative_to(Path(ray.__file__).parent)
    if in_driver and ray.is_initialized():  # a Ray worker's main module is Ray's own: never shut down from there
        ray.shutdown()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def prepare_output(folder: Path) -> Path:
    """Create the output folder and remove an earlier result, so a failed run never leaves one behind."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create output folder {folder}: {exc.strerror}; pass a writable folder with --output")
    (folder / RESULT_FILE).unlink(missing_ok=True)
    return folder


class Timer:
    """`with Timer() as t: ...` then `t.seconds`: wall time of the work only, not of imports or start-up."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def versions() -> dict[str, str]:
    """Versions worth printing next to a measured number."""
    found = {"python": platform.python_version()}
    for package in ("ray", "torch", "transformers", "numpy", "pandas"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def write_result(args: argparse.Namespace, *, seconds: float, answer: Any, **details: Any) -> Path:
    """Write result.json into the --output folder: `answer` is what the two sides must agree on, `seconds` the
    measured work time, `details` anything else worth keeping.

    The file is written to a temporary name and renamed, so it is either complete or absent.
    """
    result = {
        "seconds": round(seconds, 4),
        "smoke_test": args.smoke_test,
        "answer": answer,
        "details": details,
        "argv": sys.argv[1:],
        "versions": versions(),
        "cpu_count": os.cpu_count(),
    }
    path = args.output / RESULT_FILE
    args.output.mkdir(parents=True, exist_ok=True)  # again: a Ray Job's working directory may have been unpacked anew
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    try:
        return path.relative_to(Path.cwd())  # shorter to print when it is under the current directory
    except (ValueError, OSError):
        return path
