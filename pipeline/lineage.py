"""MLflow 3 dataset lineage: the Delta table versions a run read and wrote, as first-class dataset
inputs of the run (what MLflow's UI shows under "Datasets"), linked to the logged model.

Datasets are built from what the pipeline already knows (table URI, Delta version, the rows it
used, counted once by the ledger) rather than with `mlflow.data.from_spark`: that helper checks
for a Delta table on the local file system only (so hdfs:// and s3a:// tables would lose their
version), and its profile runs a Python job over every row. The digest is a hash of the table,
its version, the part of it used and the row count: the same input gives the same digest on
every run and every storage.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.redact import redact

if TYPE_CHECKING:
    from mlflow.entities import Dataset
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

# MLflow's context tag values that its UI knows; the others are free text.
TRAINING, EVALUATION = "training", "evaluation"
SCORING, PREDICTIONS = "scoring", "predictions"


@dataclass(frozen=True)
class DeltaInput:
    """A part of one version of a Delta table that a run read (or wrote)."""

    name: str  # e.g. "features.train"
    path: str  # the table's URI
    version: int | None  # its Delta version
    rows: int
    part: str = ""  # which rows of the version, e.g. "event_date = 2026-01-02"
    context: str = TRAINING
    frame: DataFrame | None = None  # for the column schema only (no job runs)

    @property
    def digest(self) -> str:
        key = f"{self.path}@{self.version}|{self.part}|{self.rows}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def to_dataset(item: DeltaInput) -> Dataset:
    """The MLflow dataset entity of `item`: a `delta_table` source with path and version."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.entities import Dataset

    # DeltaDatasetSource's own JSON, written here: its `to_json` leaves out a version 0.
    source: dict[str, object] = {"path": item.path}
    if item.version is not None:
        source["delta_table_version"] = item.version
    profile = {"num_rows": item.rows, "delta_version": item.version, "rows": item.part or "all"}
    return Dataset(
        name=item.name,
        digest=item.digest,
        source_type=DeltaDatasetSource._get_source_type(),
        # A table URI is configuration: through the redaction layer, as every tag and param is.
        source=redact(json.dumps(source)),
        schema=_schema(item.frame),
        profile=json.dumps(profile),
    )


def _schema(frame: DataFrame | None) -> str | None:
    if frame is None:
        return None
    from mlflow.types.utils import _infer_schema

    try:
        return json.dumps({"mlflow_colspec": _infer_schema(frame).to_dict()})
    except Exception:  # a column type MLflow's schema has no name for (e.g. vectors)
        log.debug("no MLflow schema for %s", frame.columns, exc_info=True)
        return None


def log_inputs(run_id: str, items: Sequence[DeltaInput], *, model_id: str | None = None) -> None:
    """Log `items` as the run's dataset inputs (with their context) and, when given, the model
    the run used (a scoring run's champion) as its model input."""
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, InputTag, LoggedModelInput
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    datasets = [
        DatasetInput(to_dataset(i), tags=[InputTag(MLFLOW_DATASET_CONTEXT, i.context)])
        for i in items
    ]
    models = [LoggedModelInput(model_id)] if model_id else None
    MlflowClient().log_inputs(run_id, datasets=datasets, models=models)


def log_model_metrics(
    run_id: str, metrics: dict[str, float], *, model_id: str | None, dataset: DeltaInput
) -> None:
    """Metrics measured on `dataset`, linked to the logged model (MLflow 3's model page shows
    them with the dataset they were measured on)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(
            run_id,
            key,
            value,
            dataset_name=dataset.name,
            dataset_digest=dataset.digest,
            model_id=model_id,
        )


def version_model_id(name: str, version: str) -> str | None:
    """The logged model behind a registered model version: its `model_id`, or the `models:/<id>`
    source it was registered from (the SQL registry stores only that); None for versions
    registered from a run's artifacts, before models were logged as LoggedModels."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.utils.models import _parse_model_id_if_present

    found: Any = MlflowClient().get_model_version(name, version)
    given = getattr(found, "model_id", None)
    return str(given) if given else _parse_model_id_if_present(found.source or "")
