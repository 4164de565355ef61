# Every target sets up what it needs first (scripts/setup.sh is idempotent and fast when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

PHONY_TESTS := test test-algorithms test-commands test-usecases test-faults test-slow test-cluster test-s3 test-all
.PHONY: setup demo $(PHONY_TESTS) lint format bench clean help
.PHONY: hdfs-start hdfs-stop cluster-start cluster-stop mlflow-start mlflow-stop

help:
	@echo "make demo          run the main job on the embedded default (local mode)"
	@echo "make test          the default test suite (sets everything up first)"
	@echo "make test-commands every README command in its own process, in order"
	@echo "make test-usecases the shipped use cases trained end to end"
	@echo "make test-algorithms XGBoost and explicit-rating recommendation, end to end"
	@echo "make test-faults   kill-and-rerun at every commit point and at random moments"
	@echo "make test-slow     long end-to-end suites"
	@echo "make test-cluster  spark-submit on a standalone cluster + MLflow server + HDFS"
	@echo "make test-s3       the pipeline on s3a:// against a loopback S3 API server"
	@echo "make lint          ruff + mypy"
	@echo "make bench         benchmarks against the alternatives"
	@echo "make hdfs-start    single-node HDFS on hdfs://127.0.0.1:9000 (hdfs-stop stops it)"
	@echo "make cluster-start Spark standalone master + worker, spark://127.0.0.1:7077 (cluster-stop)"
	@echo "make mlflow-start  MLflow tracking server on http://127.0.0.1:5000 (mlflow-stop)"

setup:
	@bash scripts/setup.sh

# The main job on the embedded default: 5 nights of fraud data (1M transactions) in local mode.
# DEMO_ARGS="--days 3 --rows-per-day 50000" makes it smaller. Data and MLflow go to data/demo/.
DEMO_ARGS ?=
demo: setup
	rm -rf data/demo
	MLPIPE_DATA=data/demo $(PY) -m pipeline demo $(DEMO_ARGS)

# The default suite; the longer ones below are marked and run on their own (CI runs them all).
FAST_SUITE := not slow and not cluster and not commands and not usecases and not faults and not algorithms and not s3
test: setup
	$(PY) -m pytest -m "$(FAST_SUITE)" $(PYTEST_ARGS)

# Every README command in its own fresh process, in order, on the shipped fraud pipeline.
test-commands: setup
	$(PY) -m pytest -m "commands" $(PYTEST_ARGS)

# XGBoost candidates and explicit-rating recommendation, trained end to end.
test-algorithms: setup
	$(PY) -m pytest -m "algorithms" $(PYTEST_ARGS)

# The shipped use cases (fraud, churn, maintenance, recommendation) trained from their YAML.
test-usecases: setup
	$(PY) -m pytest -m "usecases" $(PYTEST_ARGS)

# Kill-and-rerun: every commit point of every stage, and kills at random moments.
test-faults: setup
	$(PY) -m pytest -m "faults" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m "slow" $(PYTEST_ARGS)

test-cluster: setup
	bash scripts/setup.sh --hdfs
	$(PY) -m pytest -m "cluster" $(PYTEST_ARGS)

# Raw files and tables in a bucket of a loopback S3 API server (moto), through Hadoop's S3A connector.
test-s3: setup
	bash scripts/setup.sh --s3
	$(PY) -m pytest -m "s3" $(PYTEST_ARGS)

test-all: setup
	bash scripts/setup.sh --hdfs --s3
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Our paths against the alternatives (MLlib's CrossValidator, scikit-learn, spark_udf, plain copies),
# every repetition in a fresh process; writes BENCHMARKS.md. BENCH_ARGS="--quick" is a smoke run,
# BENCH_ARGS="--rows 1000000" the sizes the targets are stated at (scripts/bench.py --help).
BENCH_ARGS ?=
# The backfill benchmark: one pass against night by night (scripts/bench_backfill.py --help); then
# the ledger reads after a year of nights, before and after `mlpipe maintain` (bench_maintain.py).
BENCH_BACKFILL_ARGS ?=
bench: setup
	$(PY) scripts/bench.py $(BENCH_ARGS)
	$(PY) scripts/bench_backfill.py $(BENCH_BACKFILL_ARGS)
	$(PY) scripts/bench_maintain.py

# Local services for cluster runs (docs/CLUSTER.md): state, logs and pid files under var/.
hdfs-start:
	bash scripts/setup.sh --hdfs
	bash scripts/hdfs.sh start

hdfs-stop:
	bash scripts/hdfs.sh stop

cluster-start: setup
	bash scripts/spark-cluster.sh start

cluster-stop:
	bash scripts/spark-cluster.sh stop

mlflow-start: setup
	bash scripts/mlflow-server.sh start

mlflow-stop:
	bash scripts/mlflow-server.sh stop

clean:
	rm -rf data spark-warehouse metastore_db derby.log .pytest_cache .mypy_cache .ruff_cache
