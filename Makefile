# The two README commands are `make demo` and `make test`; everything else is a helper.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup test test-fast demo dev migrate lint bench webhook contracts clean

setup:
	@bash scripts/setup.sh

## The whole test suite, on a fresh machine: installs, lints and type-checks, starts
## PostgreSQL, prepares podman and the image's base for the container test (as root:
## scripts/containers.sh), installs promtool for the monitoring tests (as root:
## scripts/promtool.sh), runs pytest.
test: setup lint
	@bash scripts/ensure_postgres.sh
	@bash scripts/containers.sh >/dev/null
	@bash scripts/promtool.sh
	$(VENV)/pytest $(PYTEST_ARGS)

## Everything but the slow end-to-end tests (for quick iteration).
test-fast: setup lint
	@bash scripts/ensure_postgres.sh
	@bash scripts/promtool.sh
	$(VENV)/pytest -m "not slow" $(PYTEST_ARGS)

## The main job: local chain, mint history, Dagster backfill, summary.
demo: setup
	$(VENV)/python -m devtools.demo

## The Dagster UI (dagster dev) against a fresh local chain with a minted history; Ctrl-C stops all.
dev: setup
	$(VENV)/python -m devtools.demo --dev $(DEV_ARGS)

## Bring the database in DATABASE_URL (default: the embedded SQLite file) to the latest schema.
migrate: setup
	$(VENV)/python -m glisk_pipeline.db.migrate

## ruff (lint + format check) and mypy (over glisk_pipeline/ and webhook_service/, configured
## in pyproject.toml); part of `make test`, so a red lint fails the test command.
lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

## The webhook sidecar (uvicorn; host, port and workers from the settings).
webhook: setup
	$(VENV)/python -m webhook_service

## The benchmarks: B1 backfill, B2 webhook load, B3 scaling; ~10 min on 2 cores.
bench: setup
	@bash scripts/ensure_postgres.sh
	$(VENV)/python -m bench $(BENCH_ARGS)

contracts:
	node contracts/compile.js

clean:
	rm -rf .glisk .dagster_home .pytest_cache
