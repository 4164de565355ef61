"""mlpipe: a batch machine-learning pipeline on Apache Spark, Delta Lake and MLflow."""

from __future__ import annotations

__version__ = "0.1.0"
