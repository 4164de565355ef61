"""User-item interactions with a long tail and latent taste clusters (source `interactions`).

Items have Zipf-like popularity and belong to one of a few taste clusters; every user belongs to a
cluster too and takes most of their items from it, the rest from the whole catalogue by popularity.
Collaborative filtering recovers the clusters and so beats a most-popular baseline. A view may turn
into a cart event and a cart into a purchase (more often for items of the user's own cluster).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.generate.common import (
    SECONDS_PER_DAY,
    BoolArray,
    Corruption,
    DayBatch,
    FloatArray,
    IntArray,
    MessRates,
    StrArray,
    day_epoch,
    drift_days,
    finish_batch,
    format_ids,
    format_timestamps,
    label_strings,
    rng_for,
    seconds_of_day,
)

USE_CASE = "recommendation"
SOURCE = "interactions"
SOURCES = (SOURCE,)
MIN_ROWS_PER_DAY = 1
COLUMNS = ("user_id", "item_id", "event_type", "event_time")
EVENT_TYPES = ("view", "cart", "purchase")
CLUSTERS = 10
ZIPF_EXPONENT = 1.05
# Relative events per hour 00..23: shopping peaks in the evening.
# fmt: off
_EVENING_HOURS = (1.5, 0.8, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4,
                  4.5, 4, 3.5, 3.5, 4, 4.5, 5.5, 7, 8, 7.5, 5, 3)
# fmt: on


@dataclass(frozen=True)
class RecommendationSettings:
    """Tunable rates of the recommendation data set (defaults are the documented ones)."""

    own_cluster_share: float = 0.75  # average share of a user's views in their own cluster
    cart_rate_own: float = 0.15  # P(cart | view) for an item of the user's cluster
    cart_rate_other: float = 0.06
    purchase_rate: float = 0.35  # P(purchase | cart)
    conversion_drift_per_day: float = 0.02  # cart rates grow ~2% a day (relative)
    malformed_rate: float = 0.001
    duplicate_rate: float = 0.005  # double-fired events

    def __post_init__(self) -> None:
        for name in ("own_cluster_share", "cart_rate_own", "cart_rate_other", "purchase_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be within 0..1, got {getattr(self, name)}")
        for name in ("malformed_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ConfigError(f"{name} must be within 0..0.5, got {getattr(self, name)}")


@dataclass(frozen=True)
class Catalogue:
    """Users and items with their latent clusters."""

    user_id: StrArray
    user_cluster: IntArray
    user_activity: FloatArray  # share of the day's sessions (sums to 1)
    user_loyalty: FloatArray  # P(an item comes from the user's own cluster)
    item_id: StrArray
    item_cluster: IntArray
    item_popularity: FloatArray  # Zipf weight (unnormalised)
    item_trend: FloatArray  # log-popularity change per drift day (items rise and fade)


@functools.lru_cache(maxsize=8)
def catalogue(rows_per_day: int, seed: int, own_cluster_share: float = 0.75) -> Catalogue:
    """Users and items for a data-set size and seed (the same every day)."""
    rng = rng_for(seed, USE_CASE, "catalogue")
    n_users = max(100, rows_per_day // 4)
    n_items = max(100, rows_per_day // 10)
    # Every cluster gets items; popularity ranks are shuffled across clusters.
    item_cluster = rng.permutation(np.arange(n_items) % CLUSTERS)
    rank = rng.permutation(n_items) + 1
    activity = rng.lognormal(0.0, 1.0, n_users)
    # Loyalty ~ Beta with the configured mean (concentration 12).
    loyalty = rng.beta(12 * own_cluster_share + 1e-9, 12 * (1 - own_cluster_share) + 1e-9, n_users)
    return Catalogue(
        user_id=format_ids("U", np.arange(n_users), max(6, len(str(n_users)))),
        user_cluster=rng.integers(0, CLUSTERS, n_users),
        user_activity=activity / activity.sum(),
        user_loyalty=loyalty,
        item_id=format_ids("I", np.arange(n_items), max(5, len(str(n_items)))),
        item_cluster=item_cluster,
        item_popularity=np.power(rank, -ZIPF_EXPONENT, dtype=np.float64),
        item_trend=rng.normal(0.0, 0.01, n_items),
    )


def _sample_items(
    rng: np.random.Generator,
    weights: FloatArray,
    item_cluster: IntArray,
    cluster: IntArray,
    own: BoolArray,
) -> IntArray:
    """Items by popularity: within `cluster` where `own`, else from the whole catalogue."""
    n = cluster.size
    by_cluster = np.argsort(item_cluster, kind="stable")
    cum = np.cumsum(weights[by_cluster])
    starts = np.searchsorted(item_cluster[by_cluster], np.arange(CLUSTERS))
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    ends = np.append(starts[1:], len(cum)) - 1
    total = cum[ends] - before
    # Inverse-CDF sampling on the cluster's segment of the cumulative weights (or the whole range).
    u = rng.random(n)
    target = np.where(own, before[cluster] + u * total[cluster], u * cum[-1])
    pos = np.minimum(np.searchsorted(cum, target, side="right"), len(cum) - 1)
    chosen: IntArray = by_cluster[pos]
    return chosen


CORRUPTIONS = (
    Corruption("field_count"),
    Corruption("null_required", "user_id"),
    Corruption("not_allowed", "event_type", ("click", "wishlist")),
    Corruption("bad_timestamp", "event_time", ("2026-01-01T25:00", "1700000000", "01.01.2026")),
)


def generate_day(
    day: dt.date, rows_per_day: int, seed: int, settings: RecommendationSettings | None = None
) -> list[DayBatch]:
    """One day of interactions: about `rows_per_day` events (views, carts, purchases) plus mess."""
    s = settings or RecommendationSettings()
    cat = catalogue(rows_per_day, seed, s.own_cluster_share)
    rng = rng_for(seed, USE_CASE, SOURCE, day, "records")
    drift = drift_days(day)
    lift = np.exp(s.conversion_drift_per_day * drift)
    # Views such that views + carts + purchases come to about rows_per_day.
    same = s.own_cluster_share + (1 - s.own_cluster_share) / CLUSTERS
    cart_rate = same * s.cart_rate_own + (1 - same) * s.cart_rate_other
    expected = 1 + min(cart_rate * lift, 1.0) * (1 + s.purchase_rate)
    n_views = max(1, round(rows_per_day / expected))

    user = rng.choice(cat.user_activity.size, size=n_views, p=cat.user_activity)
    own = rng.random(n_views) < cat.user_loyalty[user]
    weights = cat.item_popularity * np.exp(cat.item_trend * drift)
    item = _sample_items(rng, weights, cat.item_cluster, cat.user_cluster[user], own)
    view_at = seconds_of_day(rng, n_views, _EVENING_HOURS)
    same = cat.item_cluster[item] == cat.user_cluster[user]
    cart_p = np.minimum(np.where(same, s.cart_rate_own, s.cart_rate_other) * lift, 1.0)
    carted = np.flatnonzero(rng.random(n_views) < cart_p)
    cart_at = view_at[carted] + rng.integers(30, 900, carted.size)
    bought = carted[rng.random(carted.size) < s.purchase_rate]
    buy_at = cart_at[np.searchsorted(carted, bought)] + rng.integers(60, 1800, bought.size)

    index = np.concatenate([np.arange(n_views), carted, bought])
    kind = np.repeat([0, 1, 2], [n_views, carted.size, bought.size])
    # Events spilling past midnight are clipped to the day's last second (one file per day).
    second = np.minimum(np.concatenate([view_at, cart_at, buy_at]), SECONDS_PER_DAY - 1)
    order = np.lexsort((kind, second))
    frame = pd.DataFrame(
        {
            "user_id": cat.user_id[user[index[order]]],
            "item_id": cat.item_id[item[index[order]]],
            "event_type": label_strings(EVENT_TYPES, kind[order]),
            "event_time": format_timestamps(day_epoch(day) + second[order]),
        },
        columns=list(COLUMNS),
    )
    rates = MessRates(nulls={}, duplicates=s.duplicate_rate, malformed=s.malformed_rate)
    mess = rng_for(seed, USE_CASE, SOURCE, day, "mess")
    return [finish_batch(SOURCE, day, frame, mess, rates, CORRUPTIONS)]
