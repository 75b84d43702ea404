# Two commands do everything on a fresh Linux machine with Python 3.11:
#   make demo   create .venv, install the pinned requirements, run the pair tour at smoke size
#   make test   create .venv, install the pinned requirements, run the test suite
# Also: make bench (benchmark sizes: the tour, then every M/benchmarks/*.py), make clean.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

# requirements-vllm.txt is installed with --no-deps: vLLM declares torchvision/torchaudio/torchcodec, which
# break transformers with the CPU torch (its other dependencies are pinned in requirements.txt).
$(STAMP): requirements.txt requirements-vllm.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-vllm.txt
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m workshop.tour

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m workshop.tour --bench
	@for script in */benchmarks/*.py; do \
		[ -e "$$script" ] || continue; echo "== $$script"; $(PY) "$$script" || exit 1; \
	done

clean:
	rm -rf outputs reports
