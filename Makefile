# The two commands of README.md.  Each installs what it needs first (scripts/install-deps.sh).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps run test lint unit bench bench-cold

deps:
	@scripts/install-deps.sh

run: deps
	@$(VENV)/bin/cma-harness run $(RUN_ARGS)

lint: deps
	@$(PY) -m ruff check harness tests bench
	@$(PY) -m mypy

unit: deps
	@$(PY) -m pytest -q -m "not integration"

# The base kernels are built (or found in the cache) first, with progress on the
# terminal; the integration tests then reuse them.  7.2 is unstable's newest
# linux-source, fetched into the cache on first use (harness/debsrc.py).
KERNEL_612 := /usr/src/linux-source-6.12.tar.xz
KERNEL_72 := /usr/src/linux-source-7.2.tar.xz

test: lint
	@$(VENV)/bin/cma-harness build
	@$(VENV)/bin/cma-harness build --board virt
	@$(VENV)/bin/cma-harness build --kernel-src $(KERNEL_612)
	@$(VENV)/bin/cma-harness build --kernel-src $(KERNEL_72)
	@$(PY) -m pytest -q

bench: deps
	@$(PY) bench/bench_cell.py
	@$(PY) bench/bench_matrix.py

# A cold `make run` (empty cache: kernels and ccache from nothing): time to the
# first cell's result and to the whole default matrix.
bench-cold:
	@python3 bench/bench_cold_run.py
