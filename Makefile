# mjflow: the two commands are `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: the demo needs the package and its `local` extra only; tests and lint need
# the `dev` extra too, which includes everything `local` has (so it also marks `local` done).
STAMP := $(VENV)/.installed
STAMP_LOCAL := $(VENV)/.installed-local

.PHONY: install install-local test-tools test demo bench chaos sim redis lint clean

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP) $(STAMP_LOCAL)

$(STAMP_LOCAL): pyproject.toml | $(VENV)/bin/python
	@if [ $(STAMP) -nt pyproject.toml ]; then echo "dev install is current: nothing to add"; \
	else $(BIN)/python -m pip install -q -e '.[local]'; fi
	touch $(STAMP_LOCAL)

install: $(STAMP)

install-local: $(STAMP_LOCAL)

test-tools: install ## redis-sentinel and promtool for their tests, installed when missing
	@sh tests/support/install_tools.sh $(BIN)

redis: ## make sure a Redis answers at MJFLOW_REDIS_URL (starts a local one if none does)
	@$(BIN)/python -m worker.dev.localredis

test: install test-tools redis
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: install-local redis
	$(BIN)/mjflow demo $(DEMO_ARGS)

sim: install-local
	$(BIN)/mjflow sim --port 8090 --speed 10

bench: install redis
	$(BIN)/python -m bench.run_all

chaos: install redis
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

lint: install
	$(BIN)/ruff check worker webhook simulator tests bench mjflow

clean:
	rm -rf $(VENV) .pytest_cache data artifacts
