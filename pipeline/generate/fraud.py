"""Card transactions with ~1% learnable fraud (source `transactions`, see conf/base/pipelines/fraud.yml).

A fixed population of cards (seed and size only) transacts every day. Legitimate transactions follow
each card's habits: typical spend, usual channel and device, home country, daytime hours. Fraud comes
in bursts on one card within an hour, mostly at night, on web/app, in electronics, jewelry, gaming
and online retail, abroad, for several times the card's typical spend, and preferably on young
accounts. docs/DATASETS.md lists the rates.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.generate.common import (
    DRIFT_ANCHOR,
    SECONDS_PER_DAY,
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
    pick,
    rng_for,
    seconds_of_day,
)

USE_CASE = "fraud"
SOURCE = "transactions"
SOURCES = (SOURCE,)
MIN_ROWS_PER_DAY = 1
COLUMNS = (
    "transaction_id",
    "card_id",
    "event_time",
    "amount",
    "merchant_id",
    "merchant_category",
    "country",
    "home_country",
    "channel",
    "device_type",
    "customer_age",
    "account_age_days",
    "is_fraud",
)
CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "electronics",
    "online_retail",
    "gaming",
    "jewelry",
    "pharmacy",
    "entertainment",
)
FRAUD_CATEGORIES = ("electronics", "online_retail", "gaming", "jewelry")
CHANNELS = ("pos", "web", "app")
DEVICES = ("terminal", "mobile", "desktop", "tablet")
COUNTRIES = (
    "US",
    "GB",
    "DE",
    "FR",
    "ES",
    "IT",
    "NL",
    "PL",
    "SE",
    "CA",
    "BR",
    "IN",
    "MX",
    "NG",
    "RO",
)
NULLABLE = ("device_type", "country", "customer_age", "merchant_id")

_POS, _WEB, _APP = 0, 1, 2
_TERMINAL = 0
_HOME_WEIGHTS = (30, 12, 12, 10, 8, 8, 5, 5, 3, 6, 0.5, 0.3, 0.2, 0, 0)
# Category mix by channel (card-present vs online), amount multiplier, and fraud's mix.
_POS_MIX = (30, 22, 15, 3, 3, 0, 1, 1, 10, 15)
_ONLINE_MIX = (8, 7, 0, 8, 8, 40, 6, 1, 4, 18)
_AMOUNT_FACTOR = (1.0, 0.8, 1.3, 5.0, 3.5, 1.2, 0.6, 6.0, 0.7, 0.9)
_FRAUD_MIX = (2, 2, 1, 5, 28, 25, 18, 14, 1, 4)
# Relative transactions per hour 00..23: legitimate ones peak in the afternoon, fraud at night.
# fmt: off
_DAY_HOURS = (1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6,
              7, 6.5, 6, 6, 6.5, 7, 7.5, 7, 6, 5, 3.5, 2)
# fmt: on
_NIGHT_HOURS = (6, 7, 7, 6, 5, 4, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, 2, 3, 4, 5)
_YOUNG_ACCOUNT_DAYS = 90
_MERCHANTS_PER_CATEGORY_MIN = 20


@dataclass(frozen=True)
class FraudSettings:
    """Tunable rates of the fraud data set (defaults are the documented ones)."""

    fraud_rate: float = 0.01
    null_rate: float = 0.02
    malformed_rate: float = 0.001
    duplicate_rate: float = 0.005
    amount_drift_per_day: float = 0.015  # legit and fraud amounts grow ~1.5% a day
    app_shift_per_day: float = 0.01  # share of non-app spending moving to the app, per day

    def __post_init__(self) -> None:
        if not 0.005 <= self.fraud_rate <= 0.02:
            raise ConfigError(f"fraud_rate must be within 0.005..0.02, got {self.fraud_rate}")
        for name in ("null_rate", "malformed_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ConfigError(f"{name} must be within 0..0.5, got {getattr(self, name)}")


@dataclass(frozen=True)
class Cards:
    """The card population (index = card number)."""

    card_id: StrArray
    customer_age: IntArray
    home: IntArray  # index into COUNTRIES
    account_age_at_anchor: IntArray  # days, at DRIFT_ANCHOR
    account_cycle: IntArray  # days after which the account is renewed (its age restarts at 0)
    spend: FloatArray  # typical (median) amount
    channel: IntArray  # usual channel
    web_device: IntArray
    app_device: IntArray
    activity: FloatArray  # share of the day's legitimate transactions (sums to 1)

    def account_age(self, day: dt.date) -> IntArray:
        """Account age in days on `day` (renewed accounts restart at 0, so young ones always exist)."""
        return (self.account_age_at_anchor + (day - DRIFT_ANCHOR).days) % self.account_cycle


@functools.lru_cache(maxsize=8)
def cards(rows_per_day: int, seed: int) -> Cards:
    """The card population for a data-set size and seed (the same every day)."""
    rng = rng_for(seed, USE_CASE, "cards")
    n = max(200, rows_per_day // 2)
    age = np.clip(18 + rng.gamma(4.0, 6.0, n), 18, 95).astype(np.int64)
    cycle = np.clip(rng.lognormal(np.log(2500), 0.6, n), 400, 19_000).astype(np.int64)
    # Younger customers shop more on the app, older ones at the terminal.
    u = rng.random(n)
    app_share = np.where(age < 30, 0.35, np.where(age < 55, 0.15, 0.05))
    web_share = np.where(age < 55, 0.22, 0.18)
    channel = np.where(u < app_share, _APP, np.where(u < app_share + web_share, _WEB, _POS))
    activity = rng.gamma(2.0, 0.5, n)
    return Cards(
        card_id=format_ids("C", np.arange(n), max(7, len(str(n)))),
        customer_age=age,
        home=pick(rng, _HOME_WEIGHTS, n),
        account_age_at_anchor=(rng.random(n) * cycle).astype(np.int64),
        account_cycle=cycle,
        spend=rng.lognormal(np.log(30.0) + 0.01 * (age - 40), 0.7),
        channel=channel.astype(np.int64),
        web_device=pick(rng, (0, 3, 6, 1), n),
        app_device=pick(rng, (0, 85, 0, 15), n),
        activity=activity / activity.sum(),
    )


def _foreign(rng: np.random.Generator, home: IntArray) -> IntArray:
    """A country other than `home`, uniformly."""
    return (home + rng.integers(1, len(COUNTRIES), home.size)) % len(COUNTRIES)


def _device(
    rng: np.random.Generator,
    channel: IntArray,
    usual_web: IntArray,
    usual_app: IntArray,
    habit: float,
) -> IntArray:
    """Device per transaction: terminal at the POS; else the card's usual one with prob. `habit`."""
    n = channel.size
    any_web = pick(rng, (0, 1, 1, 1), n)
    any_app = pick(rng, (0, 1, 0, 1), n)
    keep = rng.random(n) < habit
    web = np.where(keep, usual_web, any_web)
    app = np.where(keep, usual_app, any_app)
    return np.where(channel == _POS, _TERMINAL, np.where(channel == _WEB, web, app))


def _categories(rng: np.random.Generator, channel: IntArray) -> IntArray:
    n = channel.size
    return np.where(channel == _POS, pick(rng, _POS_MIX, n), pick(rng, _ONLINE_MIX, n))


@dataclass(frozen=True)
class _Part:
    card: IntArray
    second: IntArray
    channel: IntArray
    device: IntArray
    category: IntArray
    country: IntArray
    amount: FloatArray
    fraud: bool


def _legit(rng: np.random.Generator, pop: Cards, n: int, drift: float, s: FraudSettings) -> _Part:
    card = rng.choice(pop.activity.size, size=n, p=pop.activity)
    second = seconds_of_day(rng, n, _DAY_HOURS)
    channel = pop.channel[card]
    # Drift: app adoption grows with the date; 5% of transactions use any channel.
    adopt = float(np.clip(0.10 + s.app_shift_per_day * drift, 0.0, 0.8))
    channel = np.where((channel != _APP) & (rng.random(n) < adopt), _APP, channel)
    channel = np.where(rng.random(n) < 0.05, rng.integers(0, 3, n), channel)
    category = _categories(rng, channel)
    home = pop.home[card]
    abroad = rng.random(n) < np.where(category == CATEGORIES.index("travel"), 0.35, 0.015)
    scale = np.asarray(_AMOUNT_FACTOR)[category] * np.exp(s.amount_drift_per_day * drift)
    return _Part(
        card=card,
        second=second,
        channel=channel,
        device=_device(rng, channel, pop.web_device[card], pop.app_device[card], habit=0.9),
        category=category,
        country=np.where(abroad, _foreign(rng, home), home),
        amount=pop.spend[card] * scale * rng.lognormal(0.0, 0.45, n),
        fraud=False,
    )


def _fraud(
    rng: np.random.Generator, pop: Cards, n: int, day: dt.date, drift: float, s: FraudSettings
) -> _Part:
    # Bursts: 1..k transactions on one card within an hour (geometric sizes, mean ~2.2).
    sizes = rng.geometric(0.45, size=max(n, 1))
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    sizes[-1] -= int(sizes.sum()) - n
    sizes = sizes[sizes > 0]
    young = pop.account_age(day) < _YOUNG_ACCOUNT_DAYS
    weight = np.where(young, 10.0, 1.0)
    burst_card = rng.choice(weight.size, size=sizes.size, p=weight / weight.sum())
    start = seconds_of_day(rng, sizes.size, _NIGHT_HOURS)
    card = np.repeat(burst_card, sizes)
    first = np.zeros(n, dtype=bool)
    first[np.cumsum(sizes) - sizes] = True
    offset = np.where(first, 0, rng.integers(0, 3600, n))
    second = np.minimum(np.repeat(start, sizes) + offset, SECONDS_PER_DAY - 1)
    channel = pick(rng, (15, 45, 40), n)
    home = pop.home[card]
    abroad = rng.random(n) < 0.7
    amount = (
        pop.spend[card]
        * rng.lognormal(np.log(7.0), 0.6, n)
        * np.exp(s.amount_drift_per_day * drift)
    )
    # Card testing: a burst of 3+ opens with a tiny amount.
    testing = first & (np.repeat(sizes, sizes) >= 3)
    amount = np.where(testing, rng.uniform(0.5, 3.0, n), amount)
    return _Part(
        card=card,
        second=second,
        channel=channel,
        device=_device(rng, channel, pop.web_device[card], pop.app_device[card], habit=0.3),
        category=pick(rng, _FRAUD_MIX, n),
        country=np.where(abroad, _foreign(rng, home), home),
        amount=amount,
        fraud=True,
    )


def _merchants(
    rng: np.random.Generator, category: IntArray, fraud: bool, per_category: int
) -> IntArray:
    """Merchant numbers: popular ones more often; half of fraud goes to a few compromised merchants."""
    n = category.size
    j = (per_category * rng.random(n) ** 2).astype(np.int64)
    if fraud:
        risky = per_category - 1 - rng.integers(0, max(2, per_category // 20), n)
        j = np.where(rng.random(n) < 0.5, risky, j)
    return category * per_category + j


CORRUPTIONS = (
    Corruption("field_count"),
    Corruption("type_mismatch", "amount", ("abc", "12,50", "N/A")),
    Corruption("out_of_range", "amount", ("-12.5", "-0.99", "-250.0")),
    Corruption("not_allowed", "merchant_category", ("gambling", "crypto", "misc")),
    Corruption(
        "bad_timestamp", "event_time", ("2026-13-45 25:61:00", "31/12/2026 10:00", "yesterday")
    ),
)


def generate_day(
    day: dt.date, rows_per_day: int, seed: int, settings: FraudSettings | None = None
) -> list[DayBatch]:
    """One day of transactions: `rows_per_day` distinct records plus the injected mess."""
    s = settings or FraudSettings()
    pop = cards(rows_per_day, seed)
    drift = drift_days(day)
    rng = rng_for(seed, USE_CASE, SOURCE, day, "records")
    n_fraud = int(rng.binomial(rows_per_day, s.fraud_rate))
    parts = [
        _legit(rng, pop, rows_per_day - n_fraud, drift, s),
        _fraud(rng, pop, n_fraud, day, drift, s),
    ]
    per_category = max(_MERCHANTS_PER_CATEGORY_MIN, rows_per_day // 500)
    merchant = np.concatenate([_merchants(rng, p.category, p.fraud, per_category) for p in parts])

    def cat(name: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(p, name) for p in parts])

    order = np.argsort(cat("second"), kind="stable")
    card = cat("card")[order]
    n = order.size
    frame = pd.DataFrame(
        {
            "transaction_id": format_ids(f"T{day:%Y%m%d}", np.arange(n), max(7, len(str(n)))),
            "card_id": pop.card_id[card],
            "event_time": format_timestamps(day_epoch(day) + cat("second")[order]),
            "amount": np.round(np.clip(cat("amount")[order], 0.01, 50_000.0), 2),
            "merchant_id": format_ids("M", merchant[order], max(6, len(str(per_category * 10)))),
            "merchant_category": label_strings(CATEGORIES, cat("category")[order]),
            "country": label_strings(COUNTRIES, cat("country")[order]),
            "home_country": label_strings(COUNTRIES, pop.home[card]),
            "channel": label_strings(CHANNELS, cat("channel")[order]),
            "device_type": label_strings(DEVICES, cat("device")[order]),
            "customer_age": pd.array(pop.customer_age[card], dtype="Int64"),
            "account_age_days": pd.array(pop.account_age(day)[card], dtype="Int64"),
            "is_fraud": np.concatenate([np.full(p.card.size, int(p.fraud)) for p in parts])[order],
        },
        columns=list(COLUMNS),
    )
    rates = MessRates(
        nulls=dict.fromkeys(NULLABLE, s.null_rate),
        duplicates=s.duplicate_rate,
        malformed=s.malformed_rate,
    )
    mess = rng_for(seed, USE_CASE, SOURCE, day, "mess")
    return [finish_batch(SOURCE, day, frame, mess, rates, CORRUPTIONS, label="is_fraud")]
