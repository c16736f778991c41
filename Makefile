# One command each: `make run` sets up and runs the gateway on ./servers.toml,
# `make test` sets up and runs every check (ruff, mypy, pytest); `make docs` builds the docs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run run-stdio fleet test lint typecheck docs bench bench-quick clean e2e-deps

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

bench: setup  ## the full benchmark (several minutes); writes docs/benchmarks.md
	$(BIN)/python bench/run.py --markdown docs/benchmarks.md

bench-quick: setup  ## a few calls per row, so the benchmark cannot rot (run by CI)
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site

.PHONY: conformance
conformance: setup  ## the official MCP conformance suite at each protocol revision: the backend alone vs through the gateway; the backend client in client mode
	npm ci --prefix conformance --loglevel=error --no-audit --no-fund
	$(BIN)/python conformance/run.py
