# The two commands of README.md.  Each installs what it needs first (scripts/install-deps.sh).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps run test lint unit bench

deps:
	@scripts/install-deps.sh

run: deps
	@$(VENV)/bin/cma-harness run

lint: deps
	@$(PY) -m ruff check harness tests bench
	@$(PY) -m mypy

unit: deps
	@$(PY) -m pytest -q -m "not integration"

# The kernel is built (or found in the cache) first, with progress on the terminal;
# the integration tests then reuse it.
test: lint
	@$(VENV)/bin/cma-harness build
	@$(PY) -m pytest -q

bench: deps
	@$(PY) bench/bench_cell.py
