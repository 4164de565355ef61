"""A plain tabular churn data set (source `customers`): the "bring your own CSV with YAML only" example.

Each day's file is a snapshot of `rows_per_day` customers with a churn label (~20%) drawn from a
logistic model: month-to-month contracts, short tenure, many support calls, high charges, electronic
checks and fiber lines churn more; two-year contracts and long tenure churn less.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.generate.common import (
    Corruption,
    DayBatch,
    MessRates,
    drift_days,
    finish_batch,
    format_ids,
    label_strings,
    pick,
    rng_for,
)

USE_CASE = "churn"
SOURCE = "customers"
SOURCES = (SOURCE,)
MIN_ROWS_PER_DAY = 1
COLUMNS = (
    "customer_id",
    "snapshot_date",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "contract",
    "payment_method",
    "support_calls",
    "internet_service",
    "churned",
)
CONTRACTS = ("month_to_month", "one_year", "two_year")
PAYMENT_METHODS = ("electronic_check", "mailed_check", "bank_transfer", "credit_card")
INTERNET_SERVICES = ("dsl", "fiber_optic", "no_internet")
MAX_TENURE_MONTHS = 72

_M2M, _ONE_YEAR, _TWO_YEAR = range(3)
_DSL, _FIBER, _NO_INTERNET = range(3)
_BASE_CHARGE = (55.0, 85.0, 20.0)
_CHARGE_SPREAD = (8.0, 10.0, 2.0)
# Logistic churn model (intercept chosen for ~20% churn at the drift anchor).
_INTERCEPT = -2.3
_COEF_M2M, _COEF_TWO_YEAR = 1.2, -1.3
_COEF_TENURE = -0.03  # per month
_COEF_CALLS = 0.35  # per support call
_COEF_CHARGES = 0.02  # per currency unit above 65
_COEF_ECHECK, _COEF_FIBER = 0.35, 0.25


@dataclass(frozen=True)
class ChurnSettings:
    """Tunable rates of the churn data set (defaults are the documented ones)."""

    null_rate: float = 0.01  # payment_method, support_calls, total_charges (plus tenure-0 blanks)
    malformed_rate: float = 0.001
    duplicate_rate: float = 0.005
    price_drift_per_day: float = 0.003  # monthly charges grow ~0.3% a day

    def __post_init__(self) -> None:
        for name in ("null_rate", "malformed_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ConfigError(f"{name} must be within 0..0.5, got {getattr(self, name)}")


CORRUPTIONS = (
    Corruption("field_count"),
    Corruption("type_mismatch", "tenure_months", ("twelve", "1.5y")),
    Corruption("out_of_range", "monthly_charges", ("-20.0", "-0.01")),
    Corruption("not_allowed", "contract", ("weekly", "lifetime")),
    Corruption("bad_timestamp", "snapshot_date", ("2026/01/01", "01-02-2026", "2026-02-30")),
)


def generate_day(
    day: dt.date, rows_per_day: int, seed: int, settings: ChurnSettings | None = None
) -> list[DayBatch]:
    """One day's customer snapshot: `rows_per_day` distinct customers plus mess."""
    s = settings or ChurnSettings()
    rng = rng_for(seed, USE_CASE, SOURCE, day, "records")
    n = rows_per_day
    # Many recent sign-ups plus a flat spread of long-standing customers.
    tenure = np.where(
        rng.random(n) < 0.3,
        rng.integers(0, 13, n),
        rng.integers(0, MAX_TENURE_MONTHS + 1, n),
    )
    p_m2m = 0.75 - 0.006 * tenure
    p_two = 0.05 + 0.006 * tenure
    u = rng.random(n)
    contract = np.where(u < p_m2m, _M2M, np.where(u < p_m2m + p_two, _TWO_YEAR, _ONE_YEAR))
    drift = drift_days(day)
    # Drift: fiber keeps winning customers from DSL, and prices creep up.
    fiber_share = float(np.clip(45 + 0.2 * drift, 20, 70))
    internet = pick(rng, (65 - fiber_share, fiber_share, 20), n)
    monthly = (
        np.asarray(_BASE_CHARGE)[internet]
        + rng.normal(0.0, 1.0, n) * np.asarray(_CHARGE_SPREAD)[internet]
    )
    monthly = np.clip(monthly, 18.0, 150.0) * np.exp(s.price_drift_per_day * drift)
    total = monthly * tenure * rng.uniform(0.92, 1.05, n)
    payment = pick(rng, (33, 22, 22, 23), n)
    calls = np.minimum(rng.poisson(0.8 + 0.6 * (internet == _FIBER) + 0.4 * (contract == _M2M)), 20)
    logit = (
        _INTERCEPT
        + _COEF_M2M * (contract == _M2M)
        + _COEF_TWO_YEAR * (contract == _TWO_YEAR)
        + _COEF_TENURE * tenure
        + _COEF_CALLS * calls
        + _COEF_CHARGES * (monthly - 65.0)
        + _COEF_ECHECK * (payment == 0)
        + _COEF_FIBER * (internet == _FIBER)
    )
    churned = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(
        {
            "customer_id": format_ids(f"CU{day:%Y%m%d}", np.arange(n), max(6, len(str(n)))),
            "snapshot_date": np.full(n, day.isoformat(), dtype=object),
            "tenure_months": tenure.astype(np.int64),
            "monthly_charges": np.round(monthly, 2),
            # New customers have not been billed yet: blank total, as in real CRM extracts.
            "total_charges": np.where(tenure == 0, np.nan, np.round(total, 2)),
            "contract": label_strings(CONTRACTS, contract),
            "payment_method": label_strings(PAYMENT_METHODS, payment),
            "support_calls": pd.array(calls.astype(np.int64), dtype="Int64"),
            "internet_service": label_strings(INTERNET_SERVICES, internet),
            "churned": churned,
        },
        columns=list(COLUMNS),
    )
    rates = MessRates(
        nulls=dict.fromkeys(("payment_method", "support_calls", "total_charges"), s.null_rate),
        duplicates=s.duplicate_rate,
        malformed=s.malformed_rate,
    )
    mess = rng_for(seed, USE_CASE, SOURCE, day, "mess")
    return [finish_batch(SOURCE, day, frame, mess, rates, CORRUPTIONS, label="churned")]
