# Development entry points; `make venv` sets everything up (scripts/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python
# `make test` runs the tests in this many pytest-xdist processes, a whole test file at a time
# each (module fixtures are set up once; the two chaos runs never overlap), in collection
# order: the longest files (tests/integration/bench, chaos) start first. 0: in one process.
TEST_WORKERS ?= 2

.PHONY: venv demo test lint clean

venv:
	bash scripts/bootstrap.sh

demo: venv
	$(PY) -m audiosync_dev.demo

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-out build .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
