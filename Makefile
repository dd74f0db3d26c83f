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

.PHONY: install demo test test-fast release benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m autograder demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow"

release: $(STAMP)
	$(PY) -m autograder release

benchmarks: $(STAMP)
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/model_quality.py
	$(PY) benchmarks/autograde_throughput.py

clean:
	rm -rf demo_output .pytest_cache vaekit_work assignments/vaekit_work solutions/vaekit_work
	find . -name __pycache__ -prune -exec rm -rf {} +
