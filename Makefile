# One command to run, one to test. Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-proxy clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,speed]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vault-server $(ARGS)

test: $(STAMP)
	./scripts/install-test-peers.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_vault.py
	$(BIN)/python bench/proxy.py

bench-proxy: $(STAMP)
	$(BIN)/python bench/proxy.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
