# One command each: `make run` sets up and runs the gateway on ./servers.toml,
# `make test` sets up and runs every check (ruff, mypy, pytest); `make docs` builds the docs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run run-stdio fleet test lint typecheck docs bench bench-quick bench-magg clean e2e-deps

$(BIN)/mcp-agg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

setup: $(BIN)/mcp-agg

run: setup  ## the gateway over streamable HTTP at http://127.0.0.1:8000/mcp
	$(BIN)/mcp-agg serve --config servers.toml --transport http

run-stdio: setup  ## the gateway over stdio, as Claude Desktop runs it
	$(BIN)/mcp-agg serve --config servers.toml

fleet: setup  ## Redis, three replicas and HAProxy at http://127.0.0.1:8000/mcp (needs redis-server and haproxy)
	$(BIN)/python deploy/local-fleet --config servers.toml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

e2e-deps:  ## third-party MCP servers the end-to-end tests run (npm registry)
	npm ci --prefix tests/e2e/node --loglevel=error --no-audit --no-fund

test: lint typecheck e2e-deps
	$(BIN)/pytest

# mkdocs-material prints a notice of its end of life (May 2027) on every build.
# NO_MKDOCS_2_WARNING hides that notice only: --strict still fails on any warning
# about these docs (a broken link or anchor, a page missing from the nav).
docs: setup  ## the documentation site from docs/ into site/ (strict: a broken link or anchor fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# magg, the other Python aggregator the bench compares with, needs Python >= 3.12 and
# fastmcp < 4, so it gets a venv of its own, from the first Python >= 3.12 found: pyenv's
# builds, then the system's. Without one its columns say why they are empty.
MAGG_VERSION ?= 1.3.0
MAGG_VENV ?= .venv-magg
MAGG_PYTHON ?= $(firstword $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.1[2-9]*/bin/python3) $(wildcard /usr/bin/python3.1[2-9]))

$(MAGG_VENV)/bin/magg:
	@if [ -z "$(MAGG_PYTHON)" ]; then \
		echo "bench-magg: no Python >= 3.12 on this machine (magg needs one); set MAGG_PYTHON" >&2; \
	else \
		$(MAGG_PYTHON) -m venv $(MAGG_VENV) && \
		$(MAGG_VENV)/bin/python -m pip install --quiet magg==$(MAGG_VERSION); \
	fi

bench-magg: $(MAGG_VENV)/bin/magg  ## magg $(MAGG_VERSION) in a venv of its own, for the bench's magg columns

bench: setup bench-magg  ## the full benchmark (several minutes); writes docs/benchmarks.md
	$(BIN)/python bench/run.py --markdown docs/benchmarks.md

bench-quick: setup bench-magg  ## a few calls per row, so the benchmark cannot rot (run by CI)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) $(MAGG_VENV) .mypy_cache .ruff_cache .pytest_cache site

.PHONY: conformance
conformance: setup  ## the official MCP conformance suite at each protocol revision: the backend alone vs through the gateway; the backend client in client mode
	npm ci --prefix conformance --loglevel=error --no-audit --no-fund
	$(BIN)/python conformance/run.py
