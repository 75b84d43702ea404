"""The CLI checks of every workshop script, in one process: for each script, `--help` and a bad flag
(`--seed not-a-number`), run as `python SCRIPT ...` runs them (runpy, as __main__, from the repository root, with
the script's folder first on sys.path). One interpreter imports Ray, torch and the rest once for all the scripts,
instead of once per check. Writes {script: {check: {"code", "stdout", "stderr"}}} as JSON to the file named by
the first argument.

    python tests/cli_probe.py OUT.json ray_core/baseline/bootstrap_auc.py ...
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback
from pathlib import Path

CHECKS = {"help": ["--help"], "bad_flag": ["--seed", "not-a-number"]}


def probe(script: str, argv: list[str]) -> dict:
    out, err = io.StringIO(), io.StringIO()
    sys.argv, sys.path[0] = [script, *argv], str(Path(script).resolve().parent)
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:  # argparse exits: 0 after --help, 2 after a usage error
            code = exc.code
        except BaseException:  # a crash is a result too: the test prints it
            code = "crash"
            err.write(traceback.format_exc())
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> None:
    target, scripts = Path(sys.argv[1]), sys.argv[2:]
    results = {script: {name: probe(script, argv) for name, argv in CHECKS.items()} for script in scripts}
    target.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
