"""Training of a recommendation pipeline: ALS on implicit (user, item) ratings, chosen by
k-fold cross-validation on a ranking metric and compared, on held-out interactions, with the
most-popular baseline.

The feature rows are interactions (one per event, the label being its strength). Split:
* `time` (the default for recommendation): events before the cut-off train, later ones test — the
  honest setting, the model recommends what users do next;
* `random` / `stratified`: (user, item) pairs are assigned whole, by a hash of the pair and seed.
Both sides are then summed into (user, item, rating) pairs. The test set is the test pairs of users
known from training, minus the pairs they had in training when `exclude_seen` (the model is asked
for new items). Folds are hash-assigned pairs of the training split, evaluated the same way: a
fold's pairs are hidden, the model trained on the rest must find them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config.choices import RATING_METRICS
from pipeline.config.models import PipelineSpec
from pipeline.config.stages import CandidateSpec, FeatureSpec, RecommendSpec, TrainSpec
from pipeline.errors import RunError
from pipeline.model import bootstrap, ranking, sampling
from pipeline.model.candidates import make_estimator
from pipeline.model.histogram import Histogram
from pipeline.model.registry import GateInputs
from pipeline.names import LABEL
from pipeline.report.summary import RankingComparison
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
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class RecommendTask:
    """The configuration sections recommendation training uses, checked once."""

    features: FeatureSpec
    recommend: RecommendSpec
    train: TrainSpec
    lookback_days: int
    # The files of the sources a source split names (see `policy.given_test_rows`).
    test_files: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, spec: PipelineSpec) -> RecommendTask:
        """The sections of a recommendation pipeline (a `ConfigError` if absent)."""
        return cls(
            features=spec.require_features(),
            recommend=spec.require_recommend(),
            train=spec.require_train(),
            lookback_days=spec.nightly.train_lookback_days,
        )


def split_events(task: RecommendTask, events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Train/test interaction events: by time, or by whole (user, item) pairs."""
    r, s, event_time = task.recommend, task.train.split, task.features.table_time_column
    if s.kind == "time":
        cutoff = policy.time_cutoff(events, event_time, s.test_fraction)
        return sampling.split_by_time(events, time_col=event_time, cutoff=cutoff)
    if s.kind in ("source", "column"):
        chosen = policy.given_test_rows(s, task.test_files)
        return events.where(~chosen), events.where(chosen)
    return sampling.split_random(
        events, key=[r.user, r.item], test_fraction=s.test_fraction, seed=s.seed
    )


def fit_recommender(
    task: RecommendTask, pairs: DataFrame, candidate: CandidateSpec, params: dict[str, object]
) -> PipelineModel:
    """Indexers + ALS fitted on (user, item, rating) pairs."""
    from pyspark.ml import Pipeline

    stages = [*ranking.indexers(task.recommend)]
    stages.append(
        make_estimator(
            candidate, dict(params), seed=task.train.seed, implicit=not task.recommend.explicit
        )
    )
    return Pipeline(stages=stages).fit(pairs)


def recommender_preparer(task: RecommendTask, folded: DataFrame) -> FoldPreparer:
    """Per fold: index users and items once, cache the indexed ratings; each grid point fits ALS
    on them and is ranked on the fold's hidden pairs."""
    from pyspark.ml import Pipeline, PipelineModel

    tspec, r = task.train, task.recommend
    by_candidate = {c.name: c for c in tspec.candidates}

    def prepare(fold: int, fraction: float) -> PreparedFold:
        fold_train, fold_valid = policy.fold_rows(
            folded, fold, fraction, key=[r.user, r.item], seed=tspec.seed
        )
        prep = Pipeline(stages=ranking.indexers(r)).fit(fold_train)
        indexed = (
            prep.transform(fold_train)
            .select(ranking.USER_INDEX, ranking.ITEM_INDEX, ranking.RATING)
            .persist()
        )
        seen = fold_train.select(r.user, r.item).persist()
        relevant = ranking.relevant_pairs(fold_valid, fold_train, r).persist()
        n = ranking.fetch_size(seen, relevant, tspec.top_k, r)

        mean_rating = _mean_rating(fold_train) if tspec.metric in RATING_METRICS else 0.0

        def evaluate(result: GridResult) -> tuple[float, Histogram | None]:
            als = make_estimator(
                by_candidate[result.candidate],
                result.params,
                seed=tspec.seed,
                implicit=not r.explicit,
            )
            model = PipelineModel(stages=[*prep.stages, als.fit(indexed)])
            if tspec.metric in RATING_METRICS:
                rated = ranking.rating_metrics(model, fold_valid, mean_rating)
                return rated[tspec.metric], None
            per_user = ranking.evaluate_model(model, seen, relevant, tspec.top_k, r, n)
            return ranking.mean_metrics(per_user)[tspec.metric], None

        def release() -> None:
            indexed.unpersist()
            seen.unpersist()
            relevant.unpersist()

        return PreparedFold(evaluate, release)

    return prepare


def evaluate_recommender(
    task: RecommendTask, data: DataFrame, *, lap: Callable[[str], None]
) -> Evaluation:
    """Split, cross-validate ALS candidates, refit the winner, and measure it and the popularity
    baseline on the held-out interactions; the caller releases the result."""
    tspec, r = task.train, task.recommend
    missing = [c for c in (r.user, r.item, r.strength) if c not in data.columns]
    if missing:
        raise RunError(f"the feature table lacks the recommend column(s): {', '.join(missing)}")
    train_events, test_events = split_events(task, data)
    train = ranking.interaction_pairs(train_events, r).persist()
    test = ranking.interaction_pairs(test_events, r).persist()
    relevant = ranking.relevant_pairs(test, train, r).persist()
    cached = [train, test, relevant]
    try:
        rows = _count_pairs(task, train, test, relevant)
        lap("split")
        folded = sampling.with_folds(
            train, key=[r.user, r.item], folds=tspec.folds, seed=tspec.seed, label=None
        ).persist()
        try:
            results = search_candidates(tspec, recommender_preparer(task, folded))
        finally:
            folded.unpersist()
        winner = pick_winner(results, tspec.metric)
        lap("cross_validation")

        candidate = next(c for c in tspec.candidates if c.name == winner.candidate)
        final = fit_recommender(task, train, candidate, winner.params)
        lap("refit")
        evaluation = _test(task, final, train, test, relevant, winner, results, rows, cached)
        lap("evaluate")
    except BaseException:
        for df in cached:
            df.unpersist()
        raise
    return evaluation


def _mean_rating(pairs: DataFrame) -> float:
    """The mean training rating: the model-free prediction rating metrics are compared with."""
    from pyspark.sql import functions as F

    row = pairs.agg(F.avg(ranking.RATING)).first()
    return float(row[0]) if row is not None and row[0] is not None else 0.0


def _count_pairs(
    task: RecommendTask, train: DataFrame, test: DataFrame, relevant: DataFrame
) -> dict[str, int]:
    r = task.recommend
    rows = {"train": train.count(), "test": test.count(), "test_relevant": relevant.count()}
    rows["train_users"] = train.select(r.user).distinct().count()
    rows["test_users_evaluated"] = relevant.select(r.user).distinct().count()
    policy.check_given_split(task.train.split, rows["train"], rows["test"])
    if rows["train"] == 0 or rows["test_relevant"] == 0:
        raise RunError(
            f"not enough interactions to train (train pairs {rows['train']}, test pairs of known "
            f"users {rows['test_relevant']}) in the {task.lookback_days}-day window"
        )
    return rows


def _test(
    task: RecommendTask,
    final: PipelineModel,
    train: DataFrame,
    test: DataFrame,
    relevant: DataFrame,
    winner: GridResult,
    results: list[GridResult],
    rows: dict[str, int],
    cached: list[DataFrame],
) -> Evaluation:
    """The model and the popularity baseline on the held-out pairs; the gate's measures."""
    tspec, r, k = task.train, task.recommend, task.train.top_k
    mean_rating = _mean_rating(train) if r.explicit else 0.0
    model_users = ranking.evaluate_model(final, train, relevant, k, r).persist()
    baseline_users = ranking.evaluate_popularity(train, relevant, k, r).persist()
    cached += [model_users, baseline_users]
    model_means = ranking.mean_metrics(model_users)
    baseline_means = ranking.mean_metrics(baseline_users)
    test_metrics = {m: model_means[m] for m in ranking.METRIC_NAMES}
    test_metrics |= {f"baseline_{m}": baseline_means[m] for m in ranking.METRIC_NAMES}
    test_metrics["users"] = model_means["users"]
    if baseline_means["ndcg_at_k"] > 0:
        test_metrics["ndcg_lift_over_baseline"] = (
            model_means["ndcg_at_k"] / baseline_means["ndcg_at_k"]
        )
    gate_metric = tspec.gate.metric or tspec.metric
    if r.explicit:
        # Ratings predicted for the held-out pairs, beside predicting the training mean.
        rated = ranking.rating_metrics(final, test, mean_rating)
        test_metrics |= {m: rated[m] for m in RATING_METRICS}
        test_metrics |= {f"baseline_{m}": rated[f"baseline_{m}"] for m in RATING_METRICS}
        test_metrics["rated_pairs"] = rated["rated_pairs"]
        rows["test_rated"] = int(rated["rated_pairs"])
    if gate_metric in RATING_METRICS:
        baseline = ("mean rating", test_metrics[f"baseline_{gate_metric}"])
    else:
        baseline = ("most-popular", baseline_means[gate_metric])
    # In-sample check: how well the model fits the training pairs themselves (ranked with
    # nothing excluded, or their ratings predicted).
    if tspec.metric in RATING_METRICS:
        train_metric = ranking.rating_metrics(final, train, mean_rating)[tspec.metric]
    else:
        fit_spec = r.model_copy(update={"exclude_seen": False})
        train_metric = ranking.mean_metrics(
            ranking.evaluate_model(final, None, train.select(r.user, r.item), k, fit_spec)
        )[tspec.metric]

    def per_user(model: PipelineModel) -> DataFrame:
        return ranking.evaluate_model(model, train, relevant, k, r)

    def score(model: PipelineModel) -> float:
        if model is final:
            return test_metrics[gate_metric]
        if gate_metric in RATING_METRICS:
            return ranking.rating_metrics(model, test, mean_rating)[gate_metric]
        return ranking.mean_metrics(per_user(model))[gate_metric]

    def gains(challenger: PipelineModel, champion: PipelineModel) -> list[float]:
        if gate_metric in RATING_METRICS:
            return bootstrap.supervised_gains(
                challenger.transform(test).withColumnRenamed(ranking.RATING, LABEL),
                champion.transform(test).withColumnRenamed(ranking.RATING, LABEL),
                key=[r.user, r.item],
                metric=gate_metric,
                replicates=tspec.gate.bootstrap,
                seed=tspec.seed,
            )
        return bootstrap.ranking_gains(
            model_users if challenger is final else per_user(challenger),
            per_user(champion),
            user=r.user,
            metric=gate_metric,
            replicates=tspec.gate.bootstrap,
            seed=tspec.seed,
        )

    def release() -> None:
        for df in cached:
            df.unpersist()

    metrics = list(ranking.METRIC_NAMES)
    return Evaluation(
        results=results,
        winner=winner,
        final=final,
        test_metrics=test_metrics,
        train_metric=train_metric,
        test_metric=test_metrics[tspec.metric],
        threshold=None,
        importances={},
        rows=rows,
        example=test.select(r.user, r.item),
        gate=GateInputs(
            gate_metric, score, gains if tspec.gate.bootstrap else None, baseline=baseline
        ),
        release=release,
        ranking=RankingComparison(
            k=k,
            users=int(model_means["users"]),
            model={m: model_means[m] for m in metrics},
            baseline={m: baseline_means[m] for m in metrics},
        ),
    )
