"""Typed, frozen configuration models, validated before Spark starts.

Unknown keys are errors (`extra="forbid"`): a misspelt key must never be silently ignored.
Storage locations are Hadoop FileSystem URIs; a relative local path is resolved against the project
directory (the parent of the configuration directory) so that a run does not depend on the cwd.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, model_validator

from pipeline.config.base import Frozen, Identifier, KeyedError
from pipeline.config.choices import (
    CLASSIFICATION_METRICS,
    CLASSIFIER_ALGORITHMS,
    RANKING_METRICS,
    RATING_METRICS,
    REGRESSION_METRICS,
    REGRESSOR_ALGORITHMS,
)
from pipeline.config.sources import SourceSpec
from pipeline.config.stages import (
    Duration,
    FeatureSpec,
    MaintainSpec,
    ModelInputSpec,
    MonitorSpec,
    NightlySpec,
    RecommendSpec,
    ScoreSpec,
    TrainSpec,
    duration_seconds,
)
from pipeline.config.uris import LocalPath, Uri, project_dir

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
    logs: LocalPath = "data/logs"  # one log file per command run (pipeline.console)
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
                        data = {**data, key: f"sqlite:///{(project_dir(info) / raw).resolve()}"}
        return data


# --------------------------------------------------------------------------------------------------
# Pipeline spec
# --------------------------------------------------------------------------------------------------


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
    maintain: MaintainSpec = Field(default_factory=MaintainSpec)

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
            self._check_test_sources()
        return self

    def _check_test_sources(self) -> None:
        # A source split may name declared sources: their rows join the feature table as the
        # test set, so they must be other sources with the feature source's columns.
        primary = self.sources[self.feature_source]
        columns = {(c.name, c.type) for c in primary.columns}
        for name in self.test_sources:
            if name == self.feature_source:
                raise KeyedError(
                    "train.split.test",
                    f"'{name}' is the source the features come from: its rows cannot all be "
                    "test rows (name a file glob of it instead)",
                )
            theirs = {(c.name, c.type) for c in self.sources[name].columns}
            if theirs != columns:
                differ = sorted(f"{n} {t}" for n, t in theirs ^ columns)
                raise KeyedError(
                    "train.split.test",
                    f"test source '{name}' must declare the columns of '{self.feature_source}' "
                    f"(same names and types); they differ in {', '.join(differ)}",
                )

    @property
    def test_sources(self) -> list[str]:
        """The declared sources a source split names as its test set (other entries are globs)."""
        split = self.train.split if self.train is not None else None
        if split is None or split.kind != "source" or not split.test:
            return []
        return [t for t in split.test if t in self.sources]

    def _check_task(self, train: TrainSpec) -> None:
        # Algorithms and metrics must fit the task: caught here, before Spark starts.
        ranking = self.task == "recommendation"
        explicit = ranking and self.recommend is not None and self.recommend.explicit
        allowed = {
            "binary_classification": CLASSIFICATION_METRICS,
            "regression": REGRESSION_METRICS,
            "recommendation": RANKING_METRICS + (RATING_METRICS if explicit else ()),
        }[self.task]
        for where, metric in (
            ("train.metric", train.metric),
            ("train.gate.metric", train.gate.metric),
        ):
            if metric is not None and metric not in allowed:
                hint = (
                    " — rating metrics need explicit ratings: recommend.feedback: explicit"
                    if ranking and metric in RATING_METRICS
                    else ""
                )
                raise KeyedError(
                    where,
                    f"'{metric}' does not apply to a {self.task} task "
                    f"(choose one of {', '.join(allowed)}){hint}",
                )
        if ranking and self.recommend is not None:
            for i, c in enumerate(train.candidates):
                for key, values in (
                    ("params", [c.params.get("implicitPrefs")]),
                    ("grid", c.grid.get("implicitPrefs", [])),
                ):
                    if any(v is not None and bool(v) == explicit for v in values):
                        raise KeyedError(
                            f"train.candidates.{i}.{key}.implicitPrefs",
                            f"candidate '{c.name}': implicitPrefs contradicts "
                            f"recommend.feedback: {self.recommend.feedback} (the feedback sets "
                            "it: leave implicitPrefs out)",
                        )
        fitting = {
            "binary_classification": CLASSIFIER_ALGORITHMS,
            "regression": REGRESSOR_ALGORITHMS,
        }.get(self.task)
        for i, c in enumerate(train.candidates):
            if fitting is not None and c.algorithm != "als" and c.algorithm not in fitting:
                raise KeyedError(
                    f"train.candidates.{i}.algorithm",
                    f"candidate '{c.name}': algorithm '{c.algorithm}' does not apply to a "
                    f"{self.task} task (choose one of {', '.join(fitting)})",
                )
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
