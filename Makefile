# mjflow: the two commands are `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench chaos sim redis lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

redis: ## make sure a Redis answers at MJFLOW_REDIS_URL (starts a local one if none does)
	@$(BIN)/python -m worker.dev.localredis

test: install redis
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: install redis
	$(BIN)/mjflow demo $(DEMO_ARGS)

sim: install
	$(BIN)/mjflow sim --port 8090 --speed 10

bench: install redis
	$(BIN)/python -m bench.run_all

chaos: install redis
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

lint: install
	$(BIN)/ruff check worker webhook simulator tests bench

clean:
	rm -rf $(VENV) .pytest_cache data artifacts
