# Two commands for a newcomer: `make demo` and `make test`.
# Each installs what it needs into .venv on first use (a no-op afterwards).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline data for tests and demos: ../shared/data (CI) unless VAEKIT_DATA is set.
ifeq ($(VAEKIT_DATA),)
ifneq ($(wildcard ../shared/data/mnist),)
export VAEKIT_DATA := $(abspath ../shared/data)
endif
endif
export MPLBACKEND := Agg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install demo test test-fast nbval nbwork lint release benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,postgres,cluster]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m autograder demo

# Notebooks run in fast mode under nbval; 03/04 import the earlier notebooks' code from a
# work folder that starts with the reference parts (as when grading).
NBWORK := $(CURDIR)/.nbval_work
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 solutions assignments

nbwork: $(STAMP)
	rm -rf $(NBWORK) && $(PY) -c "import pathlib, autograder.parts as p; p.build_parts(pathlib.Path('$(NBWORK)'))"

# lint first: a finding stops the run before the (long) tests start
test: lint nbwork
	VAEKIT_FAST=1 VAEKIT_WORKDIR=$(NBWORK) PYTHONPATH=$(CURDIR) $(PY) -m pytest -n 2 --dist loadscope tests $(NBVAL)

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow" tests

nbval: nbwork
	VAEKIT_FAST=1 VAEKIT_WORKDIR=$(NBWORK) PYTHONPATH=$(CURDIR) $(PY) -m pytest -n 2 --dist loadscope $(NBVAL)

# ruff (lint and format, settings in pyproject.toml) over the whole repository; mypy on vaekit.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy vaekit

release: $(STAMP)
	$(PY) -m autograder release

benchmarks: $(STAMP)
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/model_quality.py
	$(PY) benchmarks/autograde_throughput.py

clean:
	rm -rf demo_output .pytest_cache .mypy_cache .ruff_cache .nbval_work vaekit_work assignments/vaekit_work solutions/vaekit_work
	find . -name __pycache__ -prune -exec rm -rf {} +
