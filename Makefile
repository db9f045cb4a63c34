# Hookkeeper — every task a make target. `make run` and `make test` are the two
# that matter; everything installs itself into .venv and node_modules first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
BUF := node_modules/.bin/buf
# Where the helper scripts live (tests point it at stand-ins).
SCRIPTS ?= ./scripts

.PHONY: install system-deps-run system-deps-test test-services run serve migrate test test-unit lint proto proto-check breaking bench demo wheel-check clean

## Debian packages: Python's venv and Node for everything (`run`); headless
## Chromium as well for the tests (`test`). Each is a no-op once installed;
## without root they are named with the command that installs them.
system-deps-run:
	$(SCRIPTS)/ensure-system-deps.sh run

system-deps-test:
	$(SCRIPTS)/ensure-system-deps.sh test

$(STAMP): pyproject.toml | system-deps-run
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json | system-deps-run
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## GraphiQL's assets, copied from node_modules (not committed: ~1.5 MB of
## build output pinned by package-lock.json); the gateway serves them itself.
GRAPHIQL := gateway/hookkeeper/gateway/static/graphiql/graphiql.min.js
$(GRAPHIQL): $(NODE_STAMP) scripts/vendor-graphiql.sh
	$(SCRIPTS)/vendor-graphiql.sh
	touch $@

install: $(STAMP) $(NODE_STAMP) $(GRAPHIQL)

## Runs the gRPC service and the GraphQL gateway (GraphiQL at
## http://127.0.0.1:8080/graphql) on the embedded SQLite default
## (var/hookkeeper.db), and prints a development partner token.
run: install migrate
	$(BIN)/hookkeeper dev

migrate: $(STAMP)
	$(BIN)/hookkeeper migrate

## The whole test suite, after installing what it needs (system-deps-test).
## PostgreSQL and Redis cases skip with a reason when no server is reachable,
## except under CI=true, where test-services makes sure both are up or fails.
## Test files run in parallel (pytest-xdist, one file per worker at a time so
## a module's real processes start once): most end-to-end time is spent
## waiting on processes, so TEST_WORKERS exceeds the 2 cores CI has.
TEST_WORKERS ?= 4
test: install system-deps-test test-services
	$(BIN)/pytest -q -ra -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-services:
	@case "$${CI:-}" in 1|true|TRUE|True|yes) \
	  $(SCRIPTS)/ensure-postgres.sh && $(SCRIPTS)/ensure-redis.sh ;; esac

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: install proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check service gateway tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BUF) lint

## Regenerates gen/ from protos/.
proto: $(STAMP)
	$(SCRIPTS)/gen_protos.sh gen 2>/dev/null

## Fails when gen/ is not what `make proto` would write.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d); $(SCRIPTS)/gen_protos.sh $$tmp 2>/dev/null; \
	if diff -r -x __pycache__ $$tmp/hookkeeper gen/hookkeeper >/dev/null; then echo "proto-check: gen/ is up to date"; rm -rf $$tmp; \
	else diff -r -x __pycache__ $$tmp/hookkeeper gen/hookkeeper | head -20; rm -rf $$tmp; echo "proto-check: gen/ is stale, run 'make proto'"; exit 1; fi

## Wire-compatibility against main (or BREAKING_AGAINST).
BREAKING_AGAINST ?= .git\#branch=main
breaking: $(NODE_STAMP)
	$(BUF) breaking --against '$(BREAKING_AGAINST)'

## One notification end to end: a configuration pointing at the example
## receiver (examples/receiver.py), an event published, the verified delivery.
demo: install
	$(PY) examples/demo.py

## The installable artifact: builds the sdist and wheel (`python -m build`),
## installs the wheel into a clean virtualenv in a temp folder and smoke-tests
## `hookkeeper dev` from another (health, GraphiQL, one mutation).
wheel-check: install
	$(SCRIPTS)/wheel-check.sh $(PY)

bench: install
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache
