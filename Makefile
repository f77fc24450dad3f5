# Two commands for a fresh machine: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint mutation clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/warmstart demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

mutation: setup  # mutation scores of the modules where a silent bug costs most (docs/development.md)
	$(PY) scripts/mutation.py all

clean:
	rm -rf runs .pytest_cache
