"""Helpers of `scripts/bench.py` (`make bench`): data set-up, the measurements, process memory
sampling, and the report. Only `report` is pure (no Spark, no timing); the tests use it."""
