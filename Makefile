# Every target sets up what it needs first (scripts/setup.sh is idempotent and fast when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow test-cluster test-all lint format bench clean help

help:
	@echo "make demo          run the main job on the embedded default (local mode)"
	@echo "make test          the default test suite (sets everything up first)"
	@echo "make test-slow     long end-to-end suites"
	@echo "make test-cluster  spark-submit on a standalone cluster + MLflow server + HDFS"
	@echo "make lint          ruff + mypy"
	@echo "make bench         benchmarks against the alternatives"

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m pipeline check

test: setup
	$(PY) -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS)

test-cluster: setup
	bash scripts/setup.sh --hdfs
	$(PY) -m pytest -m "cluster" $(PYTEST_ARGS)

test-all: setup
	bash scripts/setup.sh --hdfs
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	@echo "benchmarks are not available yet"

clean:
	rm -rf data spark-warehouse metastore_db derby.log .pytest_cache .mypy_cache .ruff_cache
