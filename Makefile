# Development entry points; `make venv` sets everything up (scripts/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv demo test lint clean

venv:
	bash scripts/bootstrap.sh

demo: venv
	$(PY) -m audiosync_dev.demo

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q --durations=30

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) demo-out build .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
