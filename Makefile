# One command to run, one to test. Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOAK_SECONDS ?= 600

.PHONY: run test soak lint bench bench-proxy bench-sessions bench-cli clean

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
	$(BIN)/python bench/sessions.py
	$(BIN)/python bench/cli_startup.py

bench-proxy: $(STAMP)
	$(BIN)/python bench/proxy.py

bench-sessions: $(STAMP)
	$(BIN)/python bench/sessions.py

bench-cli: $(STAMP)
	$(BIN)/python bench/cli_startup.py

# The long load soak (make test runs a 15 s one): 10 min, 100 connections, report printed
# (SOAK_SECONDS=60 make soak for a shorter one).
soak: $(STAMP)
	./scripts/install-test-peers.sh
	VAULT_SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -q -s -o timeout=900 tests/integration/test_soak.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
