#!/usr/bin/env bash
# make setup (and make demo / make test): find a Python 3.11, 3.12 or 3.13, then tools/setup.py builds .venv.
# PYTHON=/path/to/python picks one; otherwise the first of python3.11, python3.12, python3.13 that runs.
# tools/setup.sh --which prints the Python it would take, and stops there.
set -euo pipefail
cd "$(dirname "$0")/.."
which_only=${1:-}

in_range='import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))'
install_hint="Debian/Ubuntu: sudo apt install python3.12 python3.12-venv; macOS: brew install python@3.12"

if [ -x .venv/bin/python ] && [ "$which_only" != --which ]; then
    exec .venv/bin/python tools/setup.py   # the venv exists: set-up goes on with its Python
fi

py=""
if [ -n "${PYTHON:-}" ]; then
    if ! "$PYTHON" --version >/dev/null 2>&1; then
        echo "error: PYTHON=$PYTHON does not run; install Python 3.11-3.13 ($install_hint) or name another PYTHON=" >&2
        exit 1
    fi
    if ! "$PYTHON" -c "$in_range"; then
        echo "error: PYTHON=$PYTHON is $("$PYTHON" --version 2>&1); the workshop needs Python 3.11, 3.12 or 3.13" >&2
        exit 1
    fi
    py=$PYTHON
else
    # `--version`, not `command -v`: a pyenv shim is on PATH even when that version is not active.
    for candidate in python3.11 python3.12 python3.13; do
        if "$candidate" --version >/dev/null 2>&1 && "$candidate" -c "$in_range"; then
            py=$candidate
            break
        fi
    done
    if [ -z "$py" ]; then
        echo "error: no python3.11, python3.12 or python3.13 found; install one ($install_hint), or run: make PYTHON=/path/to/python3.X setup" >&2
        exit 1
    fi
fi

if [ "$which_only" = --which ]; then echo "$py"; exit 0; fi
version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "error: $py cannot create a virtual environment (no ensurepip); Debian/Ubuntu: sudo apt install python$version-venv" >&2
    exit 1
fi
echo "Set-up with $py: $("$py" --version 2>&1) at $("$py" -c 'import sys; print(sys.executable)')"
exec "$py" tools/setup.py
