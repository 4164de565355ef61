"""Which rows train, which test, which fold each training row is in, and how classes are balanced.

Every choice is a hash of the row's key and a seed (`pipeline.model.sampling`), so the same data
and seed give the same split on a laptop and on a cluster. Nothing here fits a model.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipeline.config.stages import RebalanceSpec, SplitSpec
from pipeline.errors import RunError
from pipeline.model import sampling
from pipeline.names import EVENT_DATE, LABEL, SOURCE_FILE

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def labelled_window(features_df: DataFrame, window: tuple[dt.date, dt.date]) -> DataFrame:
    """The feature rows with a known label whose event date falls in `window` (inclusive)."""
    from pyspark.sql import functions as F

    first, last = window
    return features_df.where(F.col(LABEL).isNotNull()).where(
        (F.col(EVENT_DATE) >= F.lit(first)) & (F.col(EVENT_DATE) <= F.lit(last))
    )


def time_cutoff(df: DataFrame, event_time: str, test_fraction: float) -> dt.datetime:
    """The event time before which `1 - test_fraction` of the rows fall (the time split's cut)."""
    from pyspark.sql import functions as F

    [cut] = df.select(F.unix_micros(F.col(event_time).cast("timestamp")).alias("t")).approxQuantile(
        "t", [1.0 - test_fraction], 0.0
    )
    return dt.datetime.fromtimestamp(cut / 1e6, tz=dt.timezone.utc).replace(tzinfo=None)


def split_train_test(
    data: DataFrame,
    spec: SplitSpec,
    *,
    key: Sequence[str],
    event_time: str,
    stratify: bool,
    cores: int,
    test_files: Mapping[str, Sequence[str]] | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Train/test as configured (stratified by label, random, by time, or given; `test_files`
    see `given_test_rows`), each spread evenly over the cores (see `sampling.spread`)."""
    if spec.kind == "time":
        cutoff = time_cutoff(data, event_time, spec.test_fraction)
        train, test = sampling.split_by_time(data, time_col=event_time, cutoff=cutoff)
    elif spec.kind in ("source", "column"):
        chosen = given_test_rows(spec, test_files)
        train, test = data.where(~chosen), data.where(chosen)
    elif spec.kind == "stratified" and stratify:
        train, test = sampling.split_stratified(
            data, key=key, test_fraction=spec.test_fraction, seed=spec.seed
        )
    else:
        train, test = sampling.split_random(
            data, key=key, test_fraction=spec.test_fraction, seed=spec.seed
        )
    return sampling.spread(train, key, cores), sampling.spread(test, key, cores)


def given_test_rows(spec: SplitSpec, sources: Mapping[str, Sequence[str]] | None = None) -> Column:
    """The rows a `source` or `column` split makes the test set. `sources` holds the files of
    the declared sources `test` names (name: file URIs, as bronze's `_source_file` spells them);
    every other entry is a glob."""
    from pyspark.sql import functions as F

    assert spec.test is not None
    if spec.kind == "column":
        assert spec.column is not None
        return F.coalesce(F.col(spec.column).cast("string").isin(spec.test), F.lit(False))
    named = sources or {}
    path = F.col(SOURCE_FILE)
    name = F.regexp_extract(path, r"[^/]*$", 0)
    matches = [
        path.rlike(f"(^|/){_glob_regex(g)}") if "/" in g else name.rlike(f"^{_glob_regex(g)}")
        for g in spec.test
        if g not in named
    ]
    files = sorted({f for listed in named.values() for f in listed})
    if files:
        matches.append(path.isin(files))
    if not matches:
        return F.lit(False)
    return F.coalesce(functools.reduce(lambda a, b: a | b, matches), F.lit(False))


def _glob_regex(glob: str) -> str:
    """A shell glob as a Java regular expression anchored at its end (`*`, `?`, `[...]`)."""
    return fnmatch.translate(glob)  # (?s:...)\Z: Java reads both


def check_given_split(spec: SplitSpec, train_rows: int, test_rows: int) -> None:
    """A given split must leave rows on both sides: say which `test` matched nothing or all."""
    if spec.kind not in ("source", "column"):
        return
    what = "file" if spec.kind == "source" else f"{spec.column} value"
    listed = ", ".join(spec.test or [])
    if test_rows == 0:
        raise RunError(
            f"train.split.test ({listed}) matches no {what} of the labelled rows in the window"
        )
    if train_rows == 0:
        raise RunError(
            f"train.split.test ({listed}) matches every row: nothing is left to train on"
        )


def assign_folds(
    train: DataFrame,
    *,
    time_split: bool,
    folds: int,
    seed: int,
    key: Sequence[str],
    event_time: str,
    stratify: bool,
    cores: int,
) -> DataFrame:
    """The training rows with `_fold`: blocks of time after a time split (the model never
    validates on the past), stratified by label for a classifier, by key hash otherwise."""
    if time_split:
        folded = sampling.with_time_folds(train, time_col=event_time, folds=folds)
    else:
        folded = sampling.with_folds(
            train, key=key, folds=folds, seed=seed, label=LABEL if stratify else None
        )
    return sampling.spread(folded, key, cores)


def fold_rows(
    folded: DataFrame, fold: int, fraction: float, *, key: Sequence[str], seed: int
) -> tuple[DataFrame, DataFrame]:
    """(training rows, validation rows) of one fold; a `fraction` below 1 keeps that share of the
    training rows (successive halving), by a hash of the key, so reruns pick the same rows."""
    from pyspark.sql import functions as F

    train = folded.where(F.col(sampling.FOLD) != fold)
    if fraction < 1.0:
        train = train.where(sampling.key_uniform(key, seed + fold, "halving") < F.lit(fraction))
    return train, folded.where(F.col(sampling.FOLD) == fold)


def rebalance(
    df: DataFrame, spec: RebalanceSpec, *, key: Sequence[str], seed: int
) -> tuple[DataFrame, str | None]:
    """Class rebalancing of training rows (never test rows): the rows, and the weight column when
    classes are weighted. Only for a binary label."""
    if spec.kind == "none":
        return df, None
    counts = {float(r[LABEL]): int(r["count"]) for r in df.groupBy(LABEL).count().collect()}
    if spec.kind == "weight":
        return sampling.with_class_weights(df, sampling.balanced_weights(counts)), sampling.WEIGHT
    minority = min(counts, key=lambda k: counts[k])
    majority = max(counts, key=lambda k: counts[k])
    keep = min(1.0, spec.majority_ratio * counts[minority] / max(1, counts[majority]))
    out = sampling.downsample_majority(
        df, keep_fraction=keep, majority=majority, key=key, seed=seed
    )
    return out, None
