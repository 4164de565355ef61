"""Typed, frozen configuration models, validated before Spark starts.

Unknown keys are errors (`extra="forbid"`): a misspelt key must never be silently ignored.
Storage locations are Hadoop FileSystem URIs; a relative local path is resolved against the project
directory (the parent of the configuration directory) so that a run does not depend on the cwd.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from pipeline.config.base import Frozen, Identifier, KeyedError
from pipeline.config.stages import (
    CLASSIFICATION_METRICS,
    RANKING_METRICS,
    REGRESSION_METRICS,
    Duration,
    FeatureSpec,
    ModelInputSpec,
    MonitorSpec,
    NightlySpec,
    RecommendSpec,
    ScoreSpec,
    TrainSpec,
    duration_seconds,
)

# Hadoop FileSystem schemes the pipeline supports; s3:// and s3n:// are deliberately absent
# (Hadoop's S3 connector is s3a://).
URI_SCHEMES = ("file", "hdfs", "s3a", "abfs", "abfss", "wasb", "wasbs", "gs", "viewfs", "dbfs")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


def _project_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    conf_dir = ctx.get("conf_dir")
    return Path(conf_dir).resolve().parent if conf_dir is not None else Path.cwd()


def normalize_uri(value: str, project_dir: Path) -> str:
    """Return a Hadoop URI: absolute `file://` for local paths, unchanged for supported schemes."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    match = _SCHEME.match(value)
    if match is None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value) and not value.startswith("/"):
            raise ValueError(f"'{value}' is not a valid URI or path")
        path = Path(value)
        if not path.is_absolute():
            path = project_dir / path
        return "file://" + str(path.resolve())
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in ("s3", "s3n"):
        raise ValueError(f"scheme '{scheme}://' is not supported by Hadoop here; use s3a://")
    if scheme not in URI_SCHEMES:
        raise ValueError(
            f"unsupported URI scheme '{scheme}://' (supported: {', '.join(URI_SCHEMES)})"
        )
    if scheme != "file" and not rest.split("/", 1)[0]:
        raise ValueError(f"'{value}' names no host or bucket")
    if scheme == "file":
        return "file://" + str(Path("/" + rest.lstrip("/")))
    return f"{scheme}://{rest}".rstrip("/")


def _uri(value: str, info: ValidationInfo) -> str:
    return normalize_uri(value, _project_dir(info))


Uri = Annotated[str, AfterValidator(_uri)]


def _local_path(value: str, info: ValidationInfo) -> str:
    uri = normalize_uri(value, _project_dir(info))
    if not uri.startswith("file://"):
        raise ValueError("must be a local path (file://), not a remote URI")
    return uri[len("file://") :]


LocalPath = Annotated[str, AfterValidator(_local_path)]


# --------------------------------------------------------------------------------------------------
# Project: spark, storage, mlflow
# --------------------------------------------------------------------------------------------------


class SparkConfig(Frozen):
    """How the SparkSession is built when the pipeline builds it (not under spark-submit)."""

    master: str = "local[*]"
    app_name: str = "mlpipe"
    driver_memory: str = Field("4g", pattern=r"^\d+[kmgtKMGT]?$")
    shuffle_partitions: int | Literal["auto"] = "auto"
    ui_enabled: bool = False
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = "WARN"
    jars_dir: str | None = None
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive_partitions(self) -> SparkConfig:
        if isinstance(self.shuffle_partitions, int) and self.shuffle_partitions < 1:
            raise ValueError("shuffle_partitions must be 'auto' or a positive integer")
        return self


class StorageConfig(Frozen):
    """Where raw files land and where Delta tables live (any Hadoop FileSystem URI)."""

    landing: Uri
    tables: Uri
    checkpoints: Uri | None = None
    reports: LocalPath = "data/reports"
    # A writer's lease on a pipeline's tables lapses this long after its holder stopped renewing
    # it (killed, host lost); until then a second writer is refused (pipeline.io.lease).
    lease_ttl: Duration = "10m"

    @property
    def lease_ttl_seconds(self) -> int:
        return duration_seconds(self.lease_ttl)


class MlflowConfig(Frozen):
    """MLflow tracking and registry."""

    tracking_uri: str
    registry_uri: str | None = None
    artifact_location: Uri | None = None
    experiment_prefix: str = "mlpipe"

    @model_validator(mode="before")
    @classmethod
    def _absolute_sqlite(cls, data: Any, info: ValidationInfo) -> Any:
        # A relative sqlite path would depend on the cwd of whoever runs the job.
        if isinstance(data, dict):
            for key in ("tracking_uri", "registry_uri"):
                value = data.get(key)
                if isinstance(value, str) and value.startswith("sqlite:///"):
                    raw = value[len("sqlite:///") :]
                    if not raw.startswith("/"):
                        data = {**data, key: f"sqlite:///{(_project_dir(info) / raw).resolve()}"}
        return data


# --------------------------------------------------------------------------------------------------
# Pipeline spec
# --------------------------------------------------------------------------------------------------

SIMPLE_TYPES = (
    "string",
    "int",
    "long",
    "bigint",
    "double",
    "float",
    "boolean",
    "date",
    "timestamp",
)
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def _column_type(value: str) -> str:
    value = value.strip().lower()
    if value in SIMPLE_TYPES or _DECIMAL.match(value):
        return "long" if value == "bigint" else value
    raise ValueError(f"unknown type '{value}' (known: {', '.join(SIMPLE_TYPES)}, decimal(p,s))")


ColumnType = Annotated[str, AfterValidator(_column_type)]


class ColumnSpec(Frozen):
    """One declared source column; rows that break its rules go to quarantine."""

    name: Identifier
    type: ColumnType
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None
    # date/timestamp: a pattern ("yyyy-MM-dd HH:mm:ss"), or epoch_seconds / epoch_millis for
    # numbers of seconds (fractions allowed) or milliseconds since 1970-01-01 00:00 UTC
    format: str | None = None

    @model_validator(mode="after")
    def _range(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        numeric = self.type not in ("string", "boolean", "date", "timestamp")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to numeric columns, not {self.type}")
        if self.format is not None and self.type not in ("date", "timestamp"):
            raise KeyedError(
                "format", f"format applies to date and timestamp columns, not {self.type}"
            )
        return self


class SourceSpec(Frozen):
    """Raw files in a landing folder: format, options and the enforced schema."""

    path: Uri | None = None  # default: <storage.landing>/<pipeline>/<source name>
    format: Literal["csv", "json", "parquet"]
    options: dict[str, str | int | bool] = Field(default_factory=dict)
    columns: list[ColumnSpec] = Field(min_length=1)
    schema_evolution: Literal["fail", "add"] = "fail"
    max_files_per_batch: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _unique(self) -> SourceSpec:
        names = [c.name.lower() for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names: {', '.join(dupes)}")
        return self


class TablesSpec(Frozen):
    """Optional explicit table locations; each defaults to <storage.tables>/<pipeline>/<table>.

    Bronze is one table per source: <bronze>/<source name>.
    """

    bronze: Uri | None = None
    ingest_log: Uri | None = None
    quarantine: Uri | None = None
    audit: Uri | None = None
    features: Uri | None = None
    predictions: Uri | None = None


class PipelineSpec(Frozen):
    """A use case: where its data comes from and how it is modelled."""

    name: Identifier
    task: Literal["binary_classification", "regression", "recommendation"]
    description: str = ""
    sources: dict[Identifier, SourceSpec] = Field(min_length=1)
    tables: TablesSpec = Field(default_factory=TablesSpec)
    features: FeatureSpec | None = None
    model: ModelInputSpec | None = None
    recommend: RecommendSpec | None = None
    train: TrainSpec | None = None
    score: ScoreSpec = Field(default_factory=ScoreSpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    nightly: NightlySpec = Field(default_factory=NightlySpec)

    @model_validator(mode="after")
    def _references(self) -> PipelineSpec:
        # Names that point at other parts of the spec must exist.
        if self.features is not None:
            if self.features.source is not None and self.features.source not in self.sources:
                raise ValueError(
                    f"features.source '{self.features.source}' is not a declared source"
                )
            label = self.features.label
            if (
                label is not None
                and label.event is not None
                and label.event.source not in self.sources
            ):
                raise ValueError(
                    f"features.label.event.source '{label.event.source}' is not a declared source"
                )
        if self.train is not None and self.features is None:
            raise ValueError("a train section needs a features section")
        if self.train is not None:
            self._check_task(self.train)
        return self

    def _check_task(self, train: TrainSpec) -> None:
        # Algorithms and metrics must fit the task: caught here, before Spark starts.
        ranking = self.task == "recommendation"
        allowed = {
            "binary_classification": CLASSIFICATION_METRICS,
            "regression": REGRESSION_METRICS,
            "recommendation": RANKING_METRICS,
        }[self.task]
        for where, metric in (
            ("train.metric", train.metric),
            ("train.gate.metric", train.gate.metric),
        ):
            if metric is not None and metric not in allowed:
                raise KeyedError(
                    where,
                    f"'{metric}' does not apply to a {self.task} task "
                    f"(choose one of {', '.join(allowed)})",
                )
        for i, c in enumerate(train.candidates):
            if (c.algorithm == "als") != ranking:
                raise KeyedError(
                    f"train.candidates.{i}.algorithm",
                    f"candidate '{c.name}': algorithm '{c.algorithm}' does not apply to a "
                    f"{self.task} task"
                    + (" (recommendation candidates use als)" if ranking else ""),
                )
        if ranking and self.recommend is None:
            raise KeyedError(
                "recommend", "a recommendation task needs a `recommend` section (user, item)"
            )
        if not ranking and self.model is None:
            raise KeyedError("model", "a train section needs a `model` section (its input columns)")

    def source(self, name: str | None = None) -> SourceSpec:
        """A source by name; the first declared one (the primary events) by default."""
        if name is None:
            return next(iter(self.sources.values()))
        return self.sources[name]

    @property
    def feature_source(self) -> str:
        """The source the feature table is built from: `features.source`, else the first one."""
        declared = self.features.source if self.features is not None else None
        return declared or next(iter(self.sources))

    @property
    def model_name(self) -> str:
        """The registered model's name: `train.model_name`, else `mlpipe-<pipeline>`."""
        given = self.train.model_name if self.train is not None else None
        return given or f"mlpipe-{self.name}"

    # The sections a stage needs, checked in one place: a stage takes them from here once and
    # hands them down, so nothing below re-checks an optional section.

    def require_features(self) -> FeatureSpec:
        """The `features` section; a `ConfigError` naming it when absent."""
        if self.features is None:
            raise _missing("features", "this stage needs a `features` section")
        return self.features

    def require_model(self) -> ModelInputSpec:
        """The `model` section (the model's input columns and preprocessing)."""
        if self.model is None:
            raise _missing("model", "this stage needs a `model` section (its input columns)")
        return self.model

    def require_train(self) -> TrainSpec:
        """The `train` section."""
        if self.train is None:
            raise _missing("train", "this stage needs a `train` section (candidates, metric)")
        return self.train

    def require_recommend(self) -> RecommendSpec:
        """The `recommend` section (user, item, strength)."""
        if self.recommend is None:
            raise _missing("recommend", "a recommendation pipeline needs a `recommend` section")
        return self.recommend


def _missing(section: str, message: str) -> Exception:
    from pipeline.errors import ConfigError

    return ConfigError(message, key=f"pipeline.{section}")


class AppConfig(Frozen):
    """The whole validated configuration of one run."""

    spark: SparkConfig = Field(default_factory=SparkConfig)
    storage: StorageConfig
    mlflow: MlflowConfig
    pipeline: PipelineSpec | None = None

    def require_pipeline(self) -> PipelineSpec:
        """The pipeline spec; a `ConfigError` when the command was not given `--pipeline`."""
        if self.pipeline is None:
            from pipeline.errors import ConfigError

            raise ConfigError("this command needs --pipeline NAME")
        return self.pipeline
