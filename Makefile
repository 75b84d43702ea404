# Two commands do everything on a fresh Linux machine with Python 3.11, 3.12 or 3.13:
#   make demo   create .venv, install the locked requirements, run the pair tour at smoke size
#   make test   create .venv, install the locked requirements, run the test suite
# Also: make bench (benchmark sizes: the tour, then every M/benchmarks/*.py), make clean, make lock, make docs,
#   make cluster-up / make cluster-down (a head + worker Ray node on this machine; ray_core/cluster/README.md).
# PYTHON=/path/to/python picks the Python (default: the first of python3.11, python3.12, python3.13 found).
# TORCH_INDEX_URL= (empty) takes torch from pip's default index, the CUDA build on Linux x86-64 (default: the CPU build).

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
UV_VERSION := 0.13.9

.PHONY: setup demo test test-slow test-bench bench clean lock docs cluster-up cluster-down

# tools/setup.sh picks the Python, tools/setup.py installs: the steps and their reasons are in its docstring.
$(STAMP): requirements.txt requirements.lock requirements-vllm.txt requirements-models.txt pyproject.toml tools/setup.py
	@tools/setup.sh
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m tools.tour

# make test: the suite within 10 minutes on 2 cores; make test-slow: the tests marked slow (the LLM pairs, Ray Jobs,
# a Tune kill, extra clusters). CI (.ci/run) runs both. make test-bench: every benchmark script and the timing
# tool at its smallest size, and the READMEs' commands as written (not in CI: .ci/run has 30 minutes).
test: $(STAMP)
	$(PY) -m pytest -m "not slow" --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow and not bench" --durations=15

test-bench: $(STAMP)
	$(PY) -m pytest -m bench --durations=15

bench: $(STAMP)
	$(PY) -m tools.tour --bench
	@for script in */benchmarks/*.py; do \
		[ -e "$$script" ] || continue; echo "== $$script"; $(PY) "$$script" || exit 1; \
	done

clean:
	rm -rf outputs reports

# After editing requirements.txt: resolve every package's version again for Linux, macOS and Windows, Python 3.11+
# (uv's universal resolve), then `make setup` installs the new set and tests/test_lock.py holds .venv to it.
lock:
	@[ -x .cache/uv/bin/uv ] || { python3 -m venv .cache/uv && .cache/uv/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	.cache/uv/bin/uv pip compile --universal --python-version 3.11 --no-emit-package ray-workshop \
		--custom-compile-command "make lock" --quiet requirements.txt -o requirements.lock

# A two-node Ray cluster on this machine that outlives make; cluster-down stops exactly that one (never `ray stop`).
cluster-up: $(STAMP)
	@$(PY) -m tools.cluster up

cluster-down:
	@if [ -x $(PY) ]; then $(PY) -m tools.cluster down; else echo "No .venv here, so no cluster from make cluster-up."; fi

# The measured figures in the Markdown files, written again from the reports in docs/reports/ (tools/docs.py).
docs: $(STAMP)
	$(PY) -m cogapp -r -I . $$(git ls-files '*.md' | xargs grep -l '\[\[\[cog')
