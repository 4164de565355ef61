"""Classification and regression: split, cross-validate, refit the winner, evaluate it once on the
held-out test set, and say how the gate measures a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config.models import PipelineSpec
from pipeline.config.stages import FeatureSpec, ModelInputSpec, TrainSpec
from pipeline.errors import RunError
from pipeline.model import bootstrap
from pipeline.model.candidates import make_estimator, model_summary
from pipeline.model.evaluate import (
    binary_metrics,
    choose_threshold,
    regression_metrics,
    score_histogram,
    selection_metric,
)
from pipeline.model.histogram import Histogram
from pipeline.model.inputs import resolve_inputs
from pipeline.model.preprocess import FEATURES, build_preprocessing, choose_pca_k, feature_names
from pipeline.model.registry import GateInputs
from pipeline.names import LABEL
from pipeline.report.summary import GridPoint
from pipeline.train import policy
from pipeline.train.evaluation import Evaluation
from pipeline.train.search import (
    FoldPreparer,
    GridResult,
    PreparedFold,
    pick_winner,
    search_candidates,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


@dataclass(frozen=True)
class SupervisedTask:
    """The configuration sections supervised training uses, checked once."""

    features: FeatureSpec
    model: ModelInputSpec
    train: TrainSpec
    classification: bool
    lookback_days: int
    # The files of the sources a source split names (see `policy.given_test_rows`).
    test_files: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, spec: PipelineSpec) -> SupervisedTask:
        """The sections of a classification or regression pipeline (a `ConfigError` if absent)."""
        return cls(
            features=spec.require_features(),
            model=spec.require_model(),
            train=spec.require_train(),
            classification=spec.task == "binary_classification",
            lookback_days=spec.nightly.train_lookback_days,
        )

    def with_inputs(self, spec: PipelineSpec, schema: StructType) -> SupervisedTask:
        """The task with its model inputs listed (found in the feature table when the YAML lists
        none, see `pipeline.model.inputs`)."""
        weight = self.train.weight_column
        if weight is not None and weight not in schema.fieldNames():
            raise RunError(f"train.weight_column: the feature table has no column '{weight}'")
        return dataclasses.replace(self, model=resolve_inputs(spec, schema))

    def split(self, data: DataFrame, cores: int) -> tuple[DataFrame, DataFrame]:
        """Train/test as configured."""
        train, test = policy.split_train_test(
            data,
            self.train.split,
            key=self.features.key_columns,
            event_time=self.features.table_time_column,
            stratify=self.classification,
            cores=cores,
            test_files=self.test_files,
        )
        return train, test

    def folds(self, train: DataFrame, cores: int) -> DataFrame:
        """The training rows with their fold."""
        return policy.assign_folds(
            train,
            time_split=self.train.split.kind == "time",
            folds=self.train.folds,
            seed=self.train.seed,
            key=self.features.key_columns,
            event_time=self.features.table_time_column,
            stratify=self.classification,
            cores=cores,
        )

    def rebalance(self, df: DataFrame, *, seed: int) -> tuple[DataFrame, str | None]:
        """Class rebalancing of training rows (classification only) and the column of training
        weights: the class weight, the sample weight (`train.weight_column`), or their product."""
        from pyspark.sql import functions as F

        sample = self.train.weight_column
        if not self.classification:
            return df, sample
        out, weight = policy.rebalance(
            df, self.train.rebalance, key=self.features.key_columns, seed=seed
        )
        if sample is None or weight is None:
            return out, weight or sample
        # Class weights and sample weights together: each row weighs both.
        return out.withColumn(weight, F.col(weight) * F.col(sample)), weight


def supervised_preparer(
    task: SupervisedTask, folded: DataFrame, *, pca_k: int | None = None
) -> FoldPreparer:
    """Per fold: fit preprocessing once on the fold's training rows and cache the vectors; each
    grid point fits its estimator on them and is scored on the fold's validation rows."""
    from pyspark.ml import Pipeline

    tspec = task.train
    by_candidate = {c.name: c for c in tspec.candidates}

    def prepare(fold: int, fraction: float) -> PreparedFold:
        fold_train, fold_valid = policy.fold_rows(
            folded, fold, fraction, key=task.features.key_columns, seed=tspec.seed
        )
        fold_train, weight_col = task.rebalance(fold_train, seed=tspec.seed + fold)
        stages = build_preprocessing(task.model, classification=task.classification, pca_k=pca_k)
        prep = Pipeline(stages=stages).fit(fold_train)
        keep = [FEATURES, LABEL] + ([weight_col] if weight_col else [])
        tr = prep.transform(fold_train).select(*keep).persist()
        sample = [task.train.weight_column] if task.train.weight_column else []
        va = prep.transform(fold_valid).select(FEATURES, LABEL, *sample).persist()

        def evaluate(result: GridResult) -> tuple[float, Histogram | None]:
            estimator = make_estimator(
                by_candidate[result.candidate],
                result.params,
                seed=tspec.seed,
                weight_col=weight_col,
            )
            predictions = estimator.fit(tr).transform(va)
            weight = tspec.weight_column
            metric = selection_metric(predictions, tspec.metric, weight)
            hist = score_histogram(predictions, weight) if task.classification else None
            return metric, hist

        def release() -> None:
            tr.unpersist()
            va.unpersist()

        return PreparedFold(evaluate, release)

    return prepare


def fit_final(
    task: SupervisedTask,
    train: DataFrame,
    winner: GridResult | GridPoint,
    *,
    pca_k: int | None = None,
) -> PipelineModel:
    """Refit preprocessing + the winning model (a candidate and its parameters) on the whole
    training split."""
    from pyspark.ml import Pipeline

    fit_df, weight_col = task.rebalance(train, seed=task.train.seed)
    candidate = next(c for c in task.train.candidates if c.name == winner.candidate)
    stages = build_preprocessing(task.model, classification=task.classification, pca_k=pca_k)
    stages.append(
        make_estimator(candidate, winner.params, seed=task.train.seed, weight_col=weight_col)
    )
    return Pipeline(stages=stages).fit(fit_df)


def evaluate_supervised(
    task: SupervisedTask, data: DataFrame, *, cores: int, lap: Callable[[str], None]
) -> Evaluation:
    """Split, cross-validate, refit, evaluate on test; the caller releases the result."""
    tspec = task.train
    train, test = task.split(data, cores)
    train, test = train.persist(), test.persist()
    try:
        rows = _count_rows(task, train, test)
        lap("split")
        folded = task.folds(train, cores).persist()
        try:
            # PCA by explained variance: k is chosen once, on the training split (never on test).
            pca_k = choose_pca_k(task.model, train, classification=task.classification)
            results = search_candidates(tspec, supervised_preparer(task, folded, pca_k=pca_k))
        finally:
            folded.unpersist()
        winner = pick_winner(results, tspec.metric)
        lap("cross_validation")

        final = fit_final(task, train, winner, pca_k=pca_k)
        names = feature_names(task.model, final.stages[:-1])
        importances = model_summary(final.stages[-1], names)
        lap("refit")
        evaluation = _test(task, final, train, test, winner, results, rows, importances)
        lap("evaluate")
    except BaseException:
        train.unpersist()
        test.unpersist()
        raise
    return evaluation


def _count_rows(task: SupervisedTask, train: DataFrame, test: DataFrame) -> dict[str, int]:
    rows = {"train": train.count(), "test": test.count()}
    policy.check_given_split(task.train.split, rows["train"], rows["test"])
    weight = task.train.weight_column
    if weight is not None:
        from pyspark.sql import functions as F

        bad = F.col(weight).isNull() | (F.col(weight).cast("double") < 0)
        invalid = train.where(bad).count() + test.where(bad).count()
        if invalid:
            raise RunError(
                f"train.weight_column '{weight}': {invalid} labelled row(s) have no weight or a "
                "negative one"
            )
    if rows["train"] == 0 or rows["test"] == 0:
        raise RunError(
            f"not enough labelled rows to train (train {rows['train']}, test {rows['test']}) "
            f"in the {task.lookback_days} days of the training window"
        )
    if task.classification:
        for r in train.groupBy(LABEL).count().collect():
            rows[f"train_label_{int(r[LABEL])}"] = int(r["count"])
        positives = rows.get("train_label_1", 0)
        if positives < task.train.folds:
            raise RunError(
                f"only {positives} positive training rows: too few for {task.train.folds} folds"
            )
    return rows


def _test(
    task: SupervisedTask,
    final: PipelineModel,
    train: DataFrame,
    test: DataFrame,
    winner: GridResult,
    results: list[GridResult],
    rows: dict[str, int],
    importances: dict[str, float],
) -> Evaluation:
    """The chosen model measured once on the held-out test set; the gate's measures."""
    tspec = task.train
    weight = tspec.weight_column  # sample weights: each test row counts as its weight
    threshold: float | None = None
    test_hist: Histogram | None = None
    test_pred = final.transform(test)
    if task.classification:
        assert winner.histogram is not None  # every classifier fold returns one
        threshold = choose_threshold(
            winner.histogram,
            tspec.threshold.rule,
            min_precision=tspec.threshold.min_precision,
            fixed=tspec.threshold.value,
        )
        test_metrics, test_hist = binary_metrics(test_pred, threshold, weight)
    else:
        test_metrics = regression_metrics(test_pred, weight)
    train_metric = selection_metric(final.transform(train), tspec.metric, weight)
    # Only measured again when the test metrics lack it (a `.get` default would always run it).
    test_metric = (
        test_metrics[tspec.metric]
        if tspec.metric in test_metrics
        else selection_metric(test_pred, tspec.metric, weight)
    )
    gate_metric = tspec.gate.metric or tspec.metric

    def score(model: PipelineModel) -> float:
        return selection_metric(model.transform(test), gate_metric, weight)

    def gains(challenger: PipelineModel, champion: PipelineModel) -> list[float]:
        return bootstrap.supervised_gains(
            challenger.transform(test),
            champion.transform(test),
            key=task.features.key_columns,
            metric=gate_metric,
            replicates=tspec.gate.bootstrap,
            seed=tspec.seed,
            weight=weight,
        )

    def release() -> None:
        train.unpersist()
        test.unpersist()

    return Evaluation(
        results=results,
        winner=winner,
        final=final,
        test_metrics=test_metrics,
        train_metric=train_metric,
        test_metric=test_metric,
        threshold=threshold,
        importances=importances,
        rows=rows,
        example=test,
        gate=GateInputs(gate_metric, score, gains if tspec.gate.bootstrap else None),
        release=release,
        test_histogram=test_hist,
    )
