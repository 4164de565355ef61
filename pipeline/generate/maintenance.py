"""Machine telemetry and failures: degradation before a failure makes "fails within 7 days" learnable.

Sources `telemetry` (one reading per machine and hour) and `failures` (one row per failure). A fixed
fleet (machines = rows_per_day // 24) fails at random with a hazard that grows with machine age and
depends on the model. In the ten days before a failure, vibration and temperature climb and errors
multiply (most strongly the signal of the failing component); after it the machine is down for a few
hours, then repaired and back to normal. Failure dates are drawn per calendar day, so any day's
telemetry knows the failures of the following days without generating them in order.
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
)

USE_CASE = "maintenance"
TELEMETRY = "telemetry"
FAILURES = "failures"
SOURCES = (TELEMETRY, FAILURES)
MIN_ROWS_PER_DAY = 24  # one machine reports 24 hourly readings a day
TELEMETRY_COLUMNS = (
    "machine_id",
    "event_time",
    "temperature",
    "vibration",
    "pressure",
    "rpm",
    "error_count",
    "model",
    "age_years",
)
FAILURE_COLUMNS = ("machine_id", "failure_time", "component")
SENSORS = ("temperature", "vibration", "pressure", "rpm")
MODELS = ("A100", "B200", "C300", "D400")
COMPONENTS = ("bearing", "motor", "pump", "controller")
LABEL_HORIZON_DAYS = 7  # the label: a failure within 7 days after the reading
RAMP_DAYS = 10  # degradation starts this long before a failure (so day 7 is already visible)
REPAIR_HOURS = 4  # readings of a machine being repaired: stopped, cold, no vibration

_BEARING, _MOTOR, _PUMP, _CONTROLLER = range(4)
_MODEL_MIX = (35, 30, 20, 15)
_BASE_TEMPERATURE = (62.0, 68.0, 71.0, 58.0)
_BASE_VIBRATION = (2.2, 2.8, 3.4, 1.9)
_BASE_PRESSURE = (110.0, 95.0, 130.0, 100.0)
_BASE_RPM = (1500.0, 1800.0, 3000.0, 1200.0)
_MODEL_HAZARD = (0.8, 1.0, 1.3, 0.9)
# Which component fails, by model (rows: models, columns: COMPONENTS).
_COMPONENT_MIX = np.array(
    [[40, 25, 20, 15], [25, 40, 20, 15], [35, 20, 35, 10], [20, 20, 20, 40]], dtype=np.float64
)


@dataclass(frozen=True)
class MaintenanceSettings:
    """Tunable rates of the maintenance data set (defaults are the documented ones)."""

    failure_rate: float = 1 / 60  # failures per machine-day for a 10-year-old machine
    null_rate: float = 0.01  # each sensor reading, independently
    malformed_rate: float = 0.001
    duplicate_rate: float = 0.005
    failure_duplicate_rate: float = 0.02  # the same failure reported twice
    temperature_drift_per_day: float = 0.05  # sensor calibration drift, degrees per day

    def __post_init__(self) -> None:
        if not 0.0 < self.failure_rate <= 0.2:
            raise ConfigError(f"failure_rate must be within 0..0.2, got {self.failure_rate}")
        for name in ("null_rate", "malformed_rate", "duplicate_rate", "failure_duplicate_rate"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ConfigError(f"{name} must be within 0..0.5, got {getattr(self, name)}")


@dataclass(frozen=True)
class Fleet:
    """The machines (index = machine number)."""

    machine_id: StrArray
    model: IntArray
    age_years: IntArray
    temperature_offset: FloatArray
    vibration_scale: FloatArray
    hazard_factor: FloatArray  # relative failure hazard (model and age)
    component_cdf: FloatArray  # (machines, components) cumulative probability of the failing part


@functools.lru_cache(maxsize=8)
def fleet(rows_per_day: int, seed: int) -> Fleet:
    """The fleet for a data-set size and seed (the same every day)."""
    rng = rng_for(seed, USE_CASE, "fleet")
    n = rows_per_day // 24
    model = pick(rng, _MODEL_MIX, n)
    age = rng.integers(0, 21, n)
    mix = _COMPONENT_MIX[model]
    return Fleet(
        machine_id=format_ids("MC", np.arange(n), max(5, len(str(n)))),
        model=model,
        age_years=age,
        temperature_offset=rng.normal(0.0, 1.5, n),
        vibration_scale=rng.lognormal(0.0, 0.15, n),
        hazard_factor=np.asarray(_MODEL_HAZARD)[model] * (0.5 + age / 20.0),
        component_cdf=np.cumsum(mix, axis=1) / mix.sum(axis=1, keepdims=True),
    )


@functools.lru_cache(maxsize=64)
def failure_schedule(
    day: dt.date, rows_per_day: int, seed: int, failure_rate: float
) -> tuple[FloatArray, IntArray]:
    """Failure time (epoch seconds, inf if none) and failing component of each machine on `day`."""
    machines = fleet(rows_per_day, seed)
    rng = rng_for(seed, USE_CASE, FAILURES, day, "schedule")
    n = machines.model.size
    fails = rng.random(n) < failure_rate * machines.hazard_factor
    at = day_epoch(day) + rng.integers(0, SECONDS_PER_DAY, n)
    component = (rng.random(n)[:, None] > machines.component_cdf).sum(axis=1)
    return np.where(fails, at.astype(np.float64), np.inf), np.minimum(
        component, len(COMPONENTS) - 1
    )


def _window(
    day: dt.date, offsets: range, rows_per_day: int, seed: int, rate: float
) -> tuple[FloatArray, IntArray]:
    """Failure times and components for days `day + offsets`, stacked as (machines, days)."""
    pairs = [
        failure_schedule(day + dt.timedelta(days=k), rows_per_day, seed, rate) for k in offsets
    ]
    return np.stack([p[0] for p in pairs], axis=1), np.stack([p[1] for p in pairs], axis=1)


TELEMETRY_CORRUPTIONS = (
    Corruption("field_count"),
    Corruption("type_mismatch", "temperature", ("abc", "hot", "--")),
    Corruption("out_of_range", "vibration", ("-1.5", "-0.2")),
    Corruption("not_allowed", "model", ("Z999", "unknown")),
    Corruption("bad_timestamp", "event_time", ("2026-02-30 25:00:00", "12/01/2026 08:00", "now")),
)


def _telemetry(day: dt.date, rows_per_day: int, seed: int, s: MaintenanceSettings) -> DayBatch:
    machines = fleet(rows_per_day, seed)
    n = machines.model.size
    rng = rng_for(seed, USE_CASE, TELEMETRY, day, "records")
    hour = np.arange(24)
    t = (day_epoch(day) + hour * 3600)[None, :] + rng.integers(0, 30, (n, 24))  # (machines, hours)

    # Next failure at or after each reading (within the ramp) and the last one before it.
    ahead, ahead_part = _window(day, range(RAMP_DAYS + 1), rows_per_day, seed, s.failure_rate)
    after = np.where(ahead[:, None, :] >= t[:, :, None], ahead[:, None, :], np.inf)
    nxt = after.argmin(axis=2)
    until = np.take_along_axis(after, nxt[:, :, None], axis=2)[:, :, 0] - t
    part = np.take_along_axis(ahead_part[:, None, :].repeat(24, axis=1), nxt[:, :, None], axis=2)[
        :, :, 0
    ]
    behind, _ = _window(day, range(-1, 1), rows_per_day, seed, s.failure_rate)
    since = t - np.where(behind[:, None, :] < t[:, :, None], behind[:, None, :], -np.inf).max(
        axis=2
    )
    repairing = since < REPAIR_HOURS * 3600

    # Degradation g: 0 far from a failure, ~0.1 seven days before it, 1 at the failure.
    g = np.clip(1.0 - until / (RAMP_DAYS * SECONDS_PER_DAY), 0.0, 1.0) ** 2
    g = np.where(np.isfinite(until), g, 0.0)
    model = np.repeat(machines.model[:, None], 24, axis=1)
    age = machines.age_years[:, None]
    drift = drift_days(day)
    shape = (n, 24)
    ambient = 2.0 * np.sin(2 * np.pi * (hour - 9) / 24)[None, :]
    temperature = (
        np.asarray(_BASE_TEMPERATURE)[model]
        + machines.temperature_offset[:, None]
        + ambient
        + rng.normal(0.0, 1.0, shape)
        + g * (4.0 + 8.0 * (part == _MOTOR))
        + s.temperature_drift_per_day * drift
    )
    vibration = (
        np.asarray(_BASE_VIBRATION)[model]
        * machines.vibration_scale[:, None]
        * (1.0 + 0.01 * age)
        * rng.lognormal(0.0, 0.08, shape)
        + g * (1.0 + 3.0 * (part == _BEARING))
    ) * np.exp(0.003 * drift)
    pressure = (
        np.asarray(_BASE_PRESSURE)[model]
        + rng.normal(0.0, 3.0, shape)
        - g * (4.0 + 25.0 * (part == _PUMP))
    )
    rpm = np.asarray(_BASE_RPM)[model] * rng.normal(1.0, 0.01, shape) * (1.0 - 0.03 * g)
    errors = rng.poisson(0.03 + 0.005 * age + g * (1.0 + 4.0 * (part == _CONTROLLER)))
    # A machine under repair is stopped: no rotation, little vibration, cooling down, no errors.
    temperature = np.where(repairing, 25.0 + rng.normal(0.0, 1.0, shape), temperature)
    vibration = np.where(repairing, 0.05 * vibration, vibration)
    pressure = np.where(repairing, np.abs(rng.normal(5.0, 1.0, shape)), pressure)
    rpm = np.where(repairing, 0.0, rpm)
    errors = np.where(repairing, 0, errors)

    # File order: by hour, then machine (readings of one hour arrive together).
    def flat(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return a.T.ravel()

    frame = pd.DataFrame(
        {
            "machine_id": np.tile(machines.machine_id, 24),
            "event_time": format_timestamps(flat(t)),
            "temperature": np.round(flat(temperature), 2),
            "vibration": np.round(flat(vibration), 3),
            "pressure": np.round(flat(pressure), 2),
            "rpm": pd.array(np.round(flat(rpm)).astype(np.int64), dtype="Int64"),
            "error_count": flat(errors).astype(np.int64),
            "model": label_strings(MODELS, flat(model)),
            "age_years": np.tile(machines.age_years, 24),
        },
        columns=list(TELEMETRY_COLUMNS),
    )
    positives = int((until <= LABEL_HORIZON_DAYS * SECONDS_PER_DAY).sum())
    rates = MessRates(
        nulls=dict.fromkeys(SENSORS, s.null_rate),
        duplicates=s.duplicate_rate,
        malformed=s.malformed_rate,
    )
    mess = rng_for(seed, USE_CASE, TELEMETRY, day, "mess")
    return finish_batch(
        TELEMETRY, day, frame, mess, rates, TELEMETRY_CORRUPTIONS, positives=positives
    )


def _failures(day: dt.date, rows_per_day: int, seed: int, s: MaintenanceSettings) -> DayBatch:
    machines = fleet(rows_per_day, seed)
    at, part = failure_schedule(day, rows_per_day, seed, s.failure_rate)
    failed = np.flatnonzero(np.isfinite(at))
    failed = failed[np.argsort(at[failed], kind="stable")]
    frame = pd.DataFrame(
        {
            "machine_id": machines.machine_id[failed],
            "failure_time": format_timestamps(at[failed].astype(np.int64)),
            "component": label_strings(COMPONENTS, part[failed]),
        },
        columns=list(FAILURE_COLUMNS),
    )
    rates = MessRates(nulls={}, duplicates=s.failure_duplicate_rate, malformed=0.0)
    mess = rng_for(seed, USE_CASE, FAILURES, day, "mess")
    return finish_batch(FAILURES, day, frame, mess, rates, ())


def generate_day(
    day: dt.date, rows_per_day: int, seed: int, settings: MaintenanceSettings | None = None
) -> list[DayBatch]:
    """One day: telemetry (machines x 24 readings plus mess), then that day's failures."""
    s = settings or MaintenanceSettings()
    return [_telemetry(day, rows_per_day, seed, s), _failures(day, rows_per_day, seed, s)]
