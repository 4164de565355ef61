"""Configuration of the modelling stages: features, preprocessing, split, training, gate, scoring."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from pipeline.config.base import Frozen, Identifier
from pipeline.config.choices import Algorithm, Metric
from pipeline.names import EVENT_DATE

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(value: str) -> int:
    """Seconds in a duration such as '30m', '24h', '7d'."""
    if value.strip() == "0":
        return 0
    match = _DURATION.match(value.strip())
    if match is None:
        raise ValueError(f"'{value}' is not a duration like 30m, 24h or 7d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(value: str) -> str:
    if duration_seconds(value) <= 0:
        raise ValueError("a duration must be positive")
    return value.strip()


Duration = Annotated[str, AfterValidator(_duration)]


def _non_negative_duration(value: str) -> str:
    value = value.strip()
    if value in ("0", "0s"):
        return "0s"
    return _duration(value)


NonNegativeDuration = Annotated[str, AfterValidator(_non_negative_duration)]


# --------------------------------------------------------------------------------------------------
# Features (bronze -> feature table)
# --------------------------------------------------------------------------------------------------


class DerivedFeature(Frozen):
    """A column computed by a Spark SQL expression over the row (and earlier derived columns)."""

    name: Identifier
    expr: str = Field(min_length=1)


class WindowFeature(Frozen):
    """Aggregates of a column per entity over past windows, strictly before each event."""

    column: str  # a column name, or "*" for counts of events
    aggs: list[Literal["count", "sum", "mean", "min", "max", "stddev"]] = Field(min_length=1)
    over: list[Duration] = Field(min_length=1)


class EventLabel(Frozen):
    """Label from another source's events: does one happen within `within` after the row's time?"""

    source: Identifier
    time: Identifier
    within: Duration
    kind: Literal["occurs_within", "time_until"] = "occurs_within"


class LabelSpec(Frozen):
    """How the label column is made: an existing column, an expression, or future events.

    With `positive`, the column holds text classes: a value in `positive` is 1, anything else 0 —
    or, when `negative` is listed too, a value in neither list is not a label the pipeline knows,
    and the row is quarantined (`unknown_label`) instead of being guessed. Values are compared
    after trimming.
    """

    column: Identifier | None = None
    expr: str | None = None
    event: EventLabel | None = None
    positive: list[str] | None = Field(None, min_length=1)
    negative: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> LabelSpec:
        given = [k for k in ("column", "expr", "event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of column, expr or event")
        if (self.positive is not None or self.negative is not None) and self.column is None:
            raise ValueError("positive and negative map the values of a label `column`")
        if self.negative is not None and self.positive is None:
            raise ValueError("negative needs positive: list the values that are the class 1")
        both = set(self.positive or ()) & set(self.negative or ())
        if both:
            raise ValueError(f"values both positive and negative: {', '.join(sorted(both))}")
        return self


ROW_ID = "row_id"  # the feature key of rows whose source has none: "<file>:<record number>"
INGEST_DATE = "_run_date"  # bronze: the run date of the batch that ingested the row


class FeatureSpec(Frozen):
    """bronze -> features: clean, deduplicate, derive, window aggregates, label.

    `key`, `entity` and `event_time` may be left out for plain tabular data. Without a key every
    row is its own: it is known by its source file and record number (`row_id`), so the same
    file ingested again replaces its rows record by record, and two identical lines stay two rows.
    Without an event time a row belongs to the run date of the batch that ingested it. Window
    features and event labels look along an entity's timeline and need both.
    """

    source: Identifier | None = None  # default: the first source
    key: list[Identifier] | None = Field(None, min_length=1)
    entity: Identifier | None = None
    event_time: Identifier | None = None
    trim_strings: bool = True
    lowercase: list[Identifier] = Field(default_factory=list)
    derived: list[DerivedFeature] = Field(default_factory=list)
    windows: list[WindowFeature] = Field(default_factory=list)
    after_windows: list[DerivedFeature] = Field(default_factory=list)
    label: LabelSpec | None = None
    keep: list[Identifier] = Field(default_factory=list)  # raw columns carried to the table

    @model_validator(mode="after")
    def _timeline(self) -> FeatureSpec:
        needs = []
        if self.windows:
            needs.append("window features")
        if self.label is not None and self.label.event is not None:
            needs.append("an event label")
        missing = [k for k in ("entity", "event_time") if getattr(self, k) is None]
        if needs and missing:
            raise ValueError(
                f"{' and '.join(needs)} look back along an entity's timeline: set "
                f"{' and '.join(missing)}"
            )
        return self

    @property
    def key_columns(self) -> list[str]:
        """The feature table's row key: `key`, else the `row_id` made from file and record."""
        return list(self.key) if self.key else [ROW_ID]

    @property
    def time_column(self) -> str:
        """The bronze column that places a row in time: `event_time`, else the ingest's date."""
        return self.event_time or INGEST_DATE

    @property
    def table_time_column(self) -> str:
        """The feature table's column that places a row in time (a time split cuts on it)."""
        return self.event_time or EVENT_DATE

    def max_window_seconds(self) -> int:
        """The longest look-back of any window feature (0 without windows)."""
        return max((duration_seconds(w) for f in self.windows for w in f.over), default=0)


# --------------------------------------------------------------------------------------------------
# Preprocessing inside the model
# --------------------------------------------------------------------------------------------------


class ImputeSpec(Frozen):
    """Missing numeric values: how to fill them, and whether to add missing-indicator columns."""

    strategy: Literal["mean", "median", "mode"] = "median"
    indicators: bool = False


class EncodeSpec(Frozen):
    """Categoricals: index + one-hot; unseen values get their own bucket; rare ones are grouped."""

    min_frequency: float = Field(0.0, ge=0.0, lt=1.0)  # share of rows below which a value is rare
    one_hot: bool = True


class SelectSpec(Frozen):
    """Feature selection on the assembled vector."""

    variance_threshold: float | None = Field(None, ge=0.0)
    univariate_top_k: int | None = Field(None, ge=1)  # keep the k best by a univariate test
    # The test: auto = ANOVA F for a classification label, F-regression for a numeric one;
    # chi2 treats the features as categorical (counts, indicators, one-hot slots).
    univariate_test: Literal["auto", "anova", "f_regression", "chi2"] = "auto"


class PcaSpec(Frozen):
    """Dimensionality reduction: k components, or enough to explain `variance`."""

    k: int | None = Field(None, ge=1)
    variance: float | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _one(self) -> PcaSpec:
        if (self.k is None) == (self.variance is None):
            raise ValueError("set exactly one of k or variance")
        return self


class ModelInputSpec(Frozen):
    """Which feature-table columns the model sees, and the preprocessing fitted with it.

    With neither `numeric` nor `categorical` listed, the model sees every feature-table column
    that is not the row's key, entity, time, label (or a column the label is made from), source
    file, sample weight or in `exclude`: numbers and true/false as numeric, text as
    categorical (`pipeline.model.inputs`).
    """

    numeric: list[Identifier] = Field(default_factory=list)
    categorical: list[Identifier] = Field(default_factory=list)
    exclude: list[Identifier] = Field(default_factory=list)
    impute: ImputeSpec = Field(default_factory=ImputeSpec)
    encode: EncodeSpec = Field(default_factory=EncodeSpec)
    scale: Literal["standard", "minmax", "none"] = "standard"
    select: SelectSpec = Field(default_factory=SelectSpec)
    pca: PcaSpec | None = None

    @property
    def inferred(self) -> bool:
        """Whether the input columns come from the feature table (none listed)."""
        return not self.numeric and not self.categorical

    @model_validator(mode="after")
    def _some_input(self) -> ModelInputSpec:
        if self.exclude and not self.inferred:
            raise ValueError(
                "exclude applies when the inputs are found from the feature table: leave out "
                "numeric and categorical, or drop exclude"
            )
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(
                f"columns listed as numeric and categorical: {', '.join(sorted(both))}"
            )
        return self


# --------------------------------------------------------------------------------------------------
# Split, rebalancing, candidates, selection, gate
# --------------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A YAML scalar as Spark casts it to a string (`true`, not Python's `True`)."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else str(value)


class SplitSpec(Frozen):
    """Train/test split: stratified by label (hash of the key, reproducible), random, by time —
    or given: `source` makes the rows of the files matching `test` (globs) the test set, `column`
    the rows whose `column` holds one of the `test` values.

    A glob without a `/` matches a file's name (`adult.test*`), one with a `/` the end of its path
    (`holdout/*.csv`).
    """

    kind: Literal["stratified", "random", "time", "source", "column"] = "stratified"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 42
    test: list[str] | None = Field(None, min_length=1)
    column: Identifier | None = None

    @model_validator(mode="before")
    @classmethod
    def _listed_strings(cls, data: Any) -> Any:
        # One glob may stand alone; values are compared as text (a column of numbers too).
        if not isinstance(data, dict) or data.get("test") is None:
            return data
        test = data["test"]
        test = test if isinstance(test, list) else [test]
        return {**data, "test": [_text(v) for v in test]}

    @model_validator(mode="after")
    def _given(self) -> SplitSpec:
        if self.kind in ("source", "column") and self.test is None:
            which = "file globs" if self.kind == "source" else "values"
            raise ValueError(f"a {self.kind} split needs `test`: the {which} of the test rows")
        if self.kind == "column" and self.column is None:
            raise ValueError(
                "a column split needs `column`: the column whose values pick test rows"
            )
        if self.kind not in ("source", "column") and self.test is not None:
            raise ValueError(f"`test` applies to a source or column split, not to {self.kind}")
        if self.kind != "column" and self.column is not None:
            raise ValueError(f"`column` applies to a column split, not to {self.kind}")
        return self


class RebalanceSpec(Frozen):
    """Class rebalancing for rare events, applied to training data only."""

    kind: Literal["none", "weight", "downsample"] = "none"
    majority_ratio: float = Field(10.0, gt=0.0)  # downsample: majority rows kept per minority row


class CandidateSpec(Frozen):
    """One algorithm and its hyperparameter grid (the estimator's parameter names: MLlib's, or
    xgboost.spark's for the xgboost algorithms)."""

    name: Identifier
    algorithm: Algorithm
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _grid_values(self) -> CandidateSpec:
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key} must list at least one value")
        return self


class SearchSpec(Frozen):
    """How the grid is searched: every point on all rows, or successive halving.

    Halving evaluates every grid point on a `min_fraction` sample of each fold's training rows,
    keeps the best 1/`factor` of them, and repeats on `factor` times more rows until the survivors
    are evaluated on all rows; only those compete for the win.
    """

    kind: Literal["grid", "halving"] = "grid"
    factor: int = Field(3, ge=2, le=10)
    min_fraction: float = Field(0.1, gt=0.0, lt=1.0)


class RecommendSpec(Frozen):
    """Recommendation: which feature columns are the user, the item and the interaction strength.

    Interactions are summed per (user, item) pair over the training window; the sum (log1p-
    compressed by default, so a few heavy repeats do not drown everything else) is ALS's implicit
    rating. Recommendations leave out items the user already interacted with when `exclude_seen`.
    """

    user: Identifier
    item: Identifier
    strength: Identifier = "label"
    # implicit: strengths of views, carts, purchases (ALS's implicitPrefs); explicit: ratings a
    # user gave (1-5 stars), averaged per pair, which ALS predicts and rmse / mae measure.
    feedback: Literal["implicit", "explicit"] = "implicit"
    # Explicit feedback: the rating from which a held-out pair counts as relevant for the
    # ranking metrics (a 1-star rating is not a hit); required with explicit feedback.
    relevant_rating: float | None = None
    transform: Literal["log1p", "none"] | None = None  # implicit default: log1p
    exclude_seen: bool = True
    # Seen items are filtered after ALS ranks: it is asked for top_k + this many items per user.
    max_seen: int = Field(200, ge=0)

    @model_validator(mode="after")
    def _feedback(self) -> RecommendSpec:
        if self.feedback == "explicit":
            if self.relevant_rating is None:
                raise ValueError(
                    "explicit feedback needs relevant_rating: the rating from which a held-out "
                    "pair counts as relevant (for example 4 on a 1-5 scale)"
                )
            if self.transform == "log1p":
                raise ValueError(
                    "explicit ratings are predicted as given: transform log1p applies "
                    "to implicit feedback"
                )
        elif self.relevant_rating is not None:
            raise ValueError("relevant_rating applies to explicit feedback (feedback: explicit)")
        return self

    @property
    def explicit(self) -> bool:
        return self.feedback == "explicit"

    @property
    def compress(self) -> bool:
        """Whether summed implicit strengths are log1p-compressed."""
        return not self.explicit and self.transform != "none"


class ThresholdSpec(Frozen):
    """How the decision threshold is chosen (on cross-validation predictions, never on test)."""

    rule: Literal["max_f1", "max_accuracy", "min_precision", "fixed"] = "max_f1"
    min_precision: float = Field(0.5, gt=0.0, le=1.0)
    value: float = Field(0.5, ge=0.0, le=1.0)


class GateSpec(Frozen):
    """Champion/challenger: promote only when the new model beats the champion by `margin`."""

    metric: Metric | None = None  # default: the selection metric
    margin: float = Field(0.0, ge=0.0)
    # Paired bootstrap over the test rows (users for recommendation): with bootstrap > 0, the
    # lower confidence bound of the gain, not just the gain, must exceed the margin.
    bootstrap: int = Field(0, ge=0, le=2000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)


class TrainSpec(Frozen):
    """Model selection and evaluation."""

    metric: Metric = "areaUnderPR"
    folds: int = Field(3, ge=2, le=20)
    parallelism: int = Field(1, ge=1, le=64)
    seed: int = 42
    candidates: list[CandidateSpec] = Field(min_length=1)
    # A feature-table column of sample weights (an instance weight of a survey): MLlib's
    # `weightCol` in training (times the class weight when classes are weighted) and the weight
    # of each row in the cross-validation and test metrics. Never a model input.
    weight_column: Identifier | None = None
    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
    rebalance: RebalanceSpec = Field(default_factory=RebalanceSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    gate: GateSpec = Field(default_factory=GateSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    top_k: int = Field(10, ge=1)  # for ranking metrics
    model_name: str | None = None  # registry name; default mlpipe-<pipeline>

    @model_validator(mode="after")
    def _unique_names(self) -> TrainSpec:
        names = [c.name for c in self.candidates]
        if len(names) != len(set(names)):
            raise ValueError("candidate names must be unique")
        return self


class ScoreSpec(Frozen):
    """Batch scoring: which rows are a run date's, and what each prediction row carries."""

    keys: list[Identifier] = Field(default_factory=list)  # default: the feature key
    # auto: score a champion verified at registration through its compiled SQL expression
    # (`pipeline.model.compiled`), any other through `PipelineModel.transform`; transform: always
    # through `transform`.
    engine: Literal["auto", "transform"] = "auto"


class MonitorSpec(Frozen):
    """Data-quality and drift thresholds for the nightly run."""

    psi_warn: float = Field(0.2, ge=0.0)
    psi_fail: float | None = Field(None, ge=0.0)  # set to fail the run on drift (after writing)
    null_rate_warn: float = Field(0.2, ge=0.0, le=1.0)
    row_count_ratio_warn: float = Field(0.5, ge=0.0)  # warn when today / trailing mean is below


class MaintainSpec(Frozen):
    """Delta upkeep of the pipeline's tables (`mlpipe maintain`, and the nightly flow on a cadence):
    compaction, checkpoints, and retention that never drops a version a champion pinned."""

    # The nightly flow runs it this often (0: no schedule; a pin near expiry still calls for one).
    every_days: int = Field(7, ge=0)
    # Files no version within this window reads are deleted by VACUUM (Delta's default: 7 days).
    file_retention_days: float = Field(7.0, ge=0.0)
    # Log entries older than this are dropped at checkpoints (Delta's default: 30 days).
    log_retention_days: float = Field(30.0, gt=0.0)


class NightlySpec(Frozen):
    """The nightly flow: when to retrain."""

    retrain_every_days: int = Field(7, ge=0)  # 0 = never on a schedule
    retrain_on_drift: bool = True
    train_lookback_days: int = Field(30, ge=1)

    def training_window(self, run_date: dt.date) -> tuple[dt.date, dt.date]:
        """The event dates a model trained on `run_date` learns from: the last
        `train_lookback_days` days, the run date included. Training reads this window, monitoring
        compares against it, and recommendations leave out what users did in it."""
        return run_date - dt.timedelta(days=self.train_lookback_days - 1), run_date
