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

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.models import AppConfig
from pipeline.config.stages import CandidateSpec, RecommendSpec
from pipeline.errors import RunError
from pipeline.model import bootstrap, ranking, sampling
from pipeline.model.candidates import make_estimator
from pipeline.model.evaluate import Histogram
from pipeline.model.registry import GateInputs

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

    from pipeline.train.runner import Evaluation, GridResult


def recommend_spec(config: AppConfig) -> RecommendSpec:
    """The pipeline's `recommend` section (the configuration guarantees it for this task)."""
    spec = config.require_pipeline()
    assert spec.recommend is not None
    return spec.recommend


def split_events(config: AppConfig, events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Train/test interaction events: by time, or by whole (user, item) pairs."""
    from pyspark.sql import functions as F

    spec = config.require_pipeline()
    assert spec.train is not None
    assert spec.features is not None
    r, s = recommend_spec(config), spec.train.split
    if s.kind == "time":
        [cut] = events.select(
            F.unix_micros(F.col(spec.features.event_time)).alias("t")
        ).approxQuantile("t", [1.0 - s.test_fraction], 0.0)
        cutoff = dt.datetime.fromtimestamp(cut / 1e6, tz=dt.timezone.utc).replace(tzinfo=None)
        return sampling.split_by_time(events, time_col=spec.features.event_time, cutoff=cutoff)
    return sampling.split_random(
        events, key=[r.user, r.item], test_fraction=s.test_fraction, seed=s.seed
    )


def fit_recommender(
    config: AppConfig, pairs: DataFrame, candidate: CandidateSpec, params: dict[str, object]
) -> PipelineModel:
    """Indexers + ALS fitted on (user, item, rating) pairs."""
    from pyspark.ml import Pipeline

    spec = config.require_pipeline()
    assert spec.train is not None
    stages = [*ranking.indexers(recommend_spec(config))]
    stages.append(make_estimator(candidate, dict(params), seed=spec.train.seed))
    return Pipeline(stages=stages).fit(pairs)


def recommender_preparer(
    config: AppConfig,
) -> Callable[
    [DataFrame, DataFrame, int],
    tuple[Callable[[GridResult], tuple[float, Histogram | None]], Callable[[], None]],
]:
    """Per fold: index users and items once, cache the indexed ratings; each grid point fits ALS
    on them and is ranked on the fold's hidden pairs."""
    from pyspark.ml import Pipeline, PipelineModel

    spec = config.require_pipeline()
    tspec = spec.train
    assert tspec is not None
    r = recommend_spec(config)
    by_candidate = {c.name: c for c in tspec.candidates}

    def prepare(
        fold_train: DataFrame, fold_valid: DataFrame, fold: int
    ) -> tuple[Callable[[GridResult], tuple[float, Histogram | None]], Callable[[], None]]:
        prep = Pipeline(stages=ranking.indexers(r)).fit(fold_train)
        indexed = (
            prep.transform(fold_train)
            .select(ranking.USER_INDEX, ranking.ITEM_INDEX, ranking.RATING)
            .persist()
        )
        seen = fold_train.select(r.user, r.item).persist()
        relevant = ranking.relevant_pairs(fold_valid, fold_train, r).persist()
        n = ranking.fetch_size(seen, relevant, tspec.top_k, r)

        def evaluate(result: GridResult) -> tuple[float, Histogram | None]:
            als = make_estimator(by_candidate[result.candidate], result.params, seed=tspec.seed)
            model = PipelineModel(stages=[*prep.stages, als.fit(indexed)])
            per_user = ranking.evaluate_model(model, seen, relevant, tspec.top_k, r, n)
            return ranking.mean_metrics(per_user)[tspec.metric], None

        def release() -> None:
            indexed.unpersist()
            seen.unpersist()
            relevant.unpersist()

        return evaluate, release

    return prepare


def evaluate_recommender(
    spark: SparkSession,
    config: AppConfig,
    data: DataFrame,
    *,
    report_dir: Path,
    lap: Callable[[str], None],
) -> Evaluation:
    """Split, cross-validate ALS candidates, refit the winner, and measure it and the popularity
    baseline on the held-out interactions."""
    from pipeline.train.runner import Evaluation, cross_validate, pick_winner

    spec = config.require_pipeline()
    tspec = spec.train
    assert tspec is not None
    r = recommend_spec(config)
    k = tspec.top_k
    missing = [c for c in (r.user, r.item, r.strength) if c not in data.columns]
    if missing:
        raise RunError(f"the feature table lacks the recommend column(s): {', '.join(missing)}")
    train_events, test_events = split_events(config, data)
    train = ranking.interaction_pairs(train_events, r).persist()
    test = ranking.interaction_pairs(test_events, r).persist()
    relevant = ranking.relevant_pairs(test, train, r).persist()
    rows = {"train": train.count(), "test": test.count(), "test_relevant": relevant.count()}
    rows["train_users"] = train.select(r.user).distinct().count()
    rows["test_users_evaluated"] = relevant.select(r.user).distinct().count()
    if rows["train"] == 0 or rows["test_relevant"] == 0:
        raise RunError(
            f"not enough interactions to train (train pairs {rows['train']}, test pairs of known "
            f"users {rows['test_relevant']}) in the {spec.nightly.train_lookback_days}-day window"
        )
    lap("split")

    folded = sampling.with_folds(
        train, key=[r.user, r.item], folds=tspec.folds, seed=tspec.seed, label=None
    ).persist()
    results = cross_validate(
        spark,
        config,
        folded,
        prepare=recommender_preparer(config),
        sample_key=[r.user, r.item],
    )
    folded.unpersist()
    winner = pick_winner(results, tspec.metric)
    lap("cross_validation")

    candidate = next(c for c in tspec.candidates if c.name == winner.candidate)
    final = fit_recommender(config, train, candidate, winner.params)
    lap("refit")

    model_users = ranking.evaluate_model(final, train, relevant, k, r).persist()
    baseline_users = ranking.evaluate_popularity(train, relevant, k, r).persist()
    model_means = ranking.mean_metrics(model_users)
    baseline_means = ranking.mean_metrics(baseline_users)
    test_metrics = {m: model_means[m] for m in ranking.METRIC_NAMES}
    test_metrics |= {f"baseline_{m}": baseline_means[m] for m in ranking.METRIC_NAMES}
    test_metrics["users"] = model_means["users"]
    if baseline_means["ndcg_at_k"] > 0:
        test_metrics["ndcg_lift_over_baseline"] = (
            model_means["ndcg_at_k"] / baseline_means["ndcg_at_k"]
        )
    # In-sample check: how well the model ranks the training pairs themselves (nothing excluded).
    fit_spec = r.model_copy(update={"exclude_seen": False})
    in_sample = ranking.mean_metrics(
        ranking.evaluate_model(final, None, train.select(r.user, r.item), k, fit_spec)
    )
    plots = [_plot_vs_baseline(model_means, baseline_means, k, report_dir)]
    lap("evaluate")

    gate_metric = tspec.gate.metric or tspec.metric

    def per_user(model: PipelineModel) -> DataFrame:
        return ranking.evaluate_model(model, train, relevant, k, r)

    def score(model: PipelineModel) -> float:
        if model is final:
            return model_means[gate_metric]
        return ranking.mean_metrics(per_user(model))[gate_metric]

    def gains(challenger: PipelineModel, champion: PipelineModel) -> list[float]:
        return bootstrap.ranking_gains(
            model_users if challenger is final else per_user(challenger),
            per_user(champion),
            user=r.user,
            metric=gate_metric,
            replicates=tspec.gate.bootstrap,
            seed=tspec.seed,
        )

    def release() -> None:
        for df in (train, test, relevant, model_users, baseline_users):
            df.unpersist()

    return Evaluation(
        results=results,
        winner=winner,
        final=final,
        test_metrics=test_metrics,
        train_metric=in_sample[tspec.metric],
        test_metric=test_metrics[tspec.metric],
        threshold=None,
        plots=plots,
        importances={},
        rows=rows,
        example=test.select(r.user, r.item),
        gate=GateInputs(gate_metric, score, gains if tspec.gate.bootstrap else None),
        release=release,
    )


def _plot_vs_baseline(
    model: dict[str, float], baseline: dict[str, float], k: int, out_dir: Path
) -> Path:
    """Bars of the four ranking metrics, the model next to the most-popular baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(ranking.METRIC_NAMES)
    labels = [n.replace("_at_k", f"@{k}") for n in names]
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar([x - 0.2 for x in xs], [model[n] for n in names], width=0.4, label="ALS model")
    ax.bar(
        [x + 0.2 for x in xs],
        [baseline[n] for n in names],
        width=0.4,
        label="most popular",
        color="#bbb",
    )
    ax.set_xticks(list(xs), labels)
    ax.set(title=f"Ranking metrics on held-out interactions ({int(model['users']):,} users)")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "ranking_vs_popularity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
