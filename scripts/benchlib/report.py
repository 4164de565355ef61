"""Pure helpers of the benchmark: measurement records, medians, ratios, targets and the Markdown
report. Nothing here starts Spark or times anything, so the tests can run it on fake JSON."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Quality = dict[str, float | int | str]

# --------------------------------------------------------------------------------------------------
# What is measured
# --------------------------------------------------------------------------------------------------

DESCRIPTIONS: dict[str, str] = {
    "train_ours": "our CV loop (`split`, `assign_folds`, `cross_validate` with 2 grid points at "
    "a time, `pick_winner`, `fit_final`) + test metrics",
    "train_ours_halving": "`train_ours` with successive halving (factor 2: all 4 points on 1/4 of "
    "each fold's training rows, the best 2 on 1/2, the best on all) instead of the full grid",
    "train_ours_full": "`run_train` end to end (the above + plots, MLflow runs, registry, gate)",
    "train_naive_mllib": "MLlib `CrossValidator` over the whole preprocessing + model `Pipeline`, "
    "parallelism 1, nothing cached by us",
    "train_sklearn": "scikit-learn `GridSearchCV` (imputer + scaler + one-hot + "
    "`LogisticRegression`), same rows and folds",
    "train_gbt_ours": "`fit_final` with a GBT candidate (depth 5, 50 iterations, step 0.3, "
    "255 bins) + test AUC",
    "train_xgb": "`fit_final` with an `xgboost` candidate (`xgboost.spark`, one worker per core; "
    "depth 5, 50 rounds, rate 0.3, 255 bins) + test AUC",
    "train_gbt_sklearn": "`HistGradientBoostingClassifier` (depth 5, 50 iterations, rate 0.3, "
    "its default 255 bins), same preprocessing, same rows",
    "score_ours": "saved `PipelineModel` → compiled score expression (checked against "
    "`transform` at set-up) → `predictions_frame` → `write_predictions` (Delta)",
    "score_spark_udf": "`mlflow.pyfunc.spark_udf(env_manager='local')` on the same model, same "
    "rows, same Delta write",
    "score_tree_ours": "the tree champion (preprocessing + MLlib GBT, 50 trees of depth 5) → "
    "its trees compiled to SQL (checked against `transform` at set-up) → same Delta write",
    "score_tree_transform": "the same tree champion through MLlib's `transform`, same write",
    "score_io_floor": "plain Delta → Delta copy of the same rows (all columns)",
    "ingest_ours": "`run_ingest` on the generated fraud CSV files (validation, quarantine, ledger)",
    "ingest_plain": "`spark.read.csv` (header, declared schema) → Delta append of the same files",
}


@dataclass(frozen=True)
class Group:
    """Measurements compared side by side in one table, with ratios against `baseline`."""

    key: str
    title: str
    names: tuple[str, ...]
    baseline: str


GROUPS: tuple[Group, ...] = (
    Group(
        "training",
        "Training: logistic regression, 4-point regParam grid × 3 folds, refit, test AUC",
        (
            "train_ours",
            "train_ours_halving",
            "train_ours_full",
            "train_naive_mllib",
            "train_sklearn",
        ),
        "train_sklearn",
    ),
    Group(
        "gbt",
        "Training: gradient-boosted trees (MLlib, XGBoost on Spark, scikit-learn), one grid "
        "point, fit + test AUC (no CV)",
        ("train_xgb", "train_gbt_ours", "train_gbt_sklearn"),
        "train_gbt_sklearn",
    ),
    Group(
        "scoring",
        "Scoring: every row of the table → predictions Delta table",
        ("score_ours", "score_spark_udf", "score_io_floor"),
        "score_io_floor",
    ),
    Group(
        "tree_scoring",
        "Scoring a tree champion: every row of the table → predictions Delta table",
        ("score_tree_ours", "score_tree_transform", "score_io_floor"),
        "score_io_floor",
    ),
    Group(
        "ingest",
        "Ingest: generated fraud CSV files → Delta",
        ("ingest_ours", "ingest_plain"),
        "ingest_plain",
    ),
)
SCALED: tuple[str, ...] = ("train_ours", "score_ours")

# Targets (stated at 1M base rows; the scaling targets at 4x the base rows).
TARGET_ROWS = 1_000_000
TRAIN_TIME_MAX = 3.0  # our logistic-regression CV wall time / scikit-learn's
GBT_TIME_MAX = 1.5  # MLlib's GBT / HistGradientBoosting
XGB_TIME_MAX = 2.0  # XGBoost on Spark / HistGradientBoosting
AUC_TOLERANCE = 0.002  # our test AUC >= scikit-learn's - this
SCORE_FLOOR_MAX = 1.3  # our scoring / the Delta copy
UDF_MIN_SPEEDUP = 10.0  # spark_udf scoring / ours
INGEST_MAX = 1.5  # run_ingest / plain CSV -> Delta
TREE_SCORE_FLOOR_MAX = 1.5  # tree-champion scoring / the Delta copy
SCALE_TIME_PER_FACTOR = 4.5 / 4.0  # time at k x rows <= 1.125 k x the time at 1x
SCALE_MEMORY_MAX = 1.2  # driver JVM peak at the largest scale / at 1x


def regparam_to_c(reg_param: float, n_train: int) -> float:
    """scikit-learn's C for MLlib's L2 `regParam` λ on `n_train` rows.

    MLlib minimises  (1/n) Σ logloss + (λ/2)·‖w‖²;  scikit-learn minimises  C·Σ logloss + ½‖w‖².
    Dividing the latter by C·n gives the former with λ = 1/(C·n), so C = 1/(λ·n).
    """
    if reg_param <= 0 or n_train <= 0:
        raise ValueError("regParam and the number of training rows must be positive")
    return 1.0 / (reg_param * n_train)


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Rep:
    """One repetition: one fresh process running one measurement at one size."""

    name: str
    size: int
    ok: bool
    wall_s: float | None = None  # the timed work (excludes interpreter and Spark start-up)
    process_s: float | None = None  # the whole child process, start to exit
    py_peak_mb: float | None = None  # the measurement's Python process (VmHWM)
    jvm_peak_mb: float | None = None  # the driver JVM (VmHWM)
    workers_peak_mb: float | None = None  # every other descendant, summed Pss at its peak
    quality: Quality = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Rep:
        """A record from the JSON a child printed (plus what the parent measured)."""
        return Rep(
            name=str(data["name"]),
            size=int(data["size"]),
            ok=bool(data.get("ok", False)),
            wall_s=_opt_float(data.get("wall_s")),
            process_s=_opt_float(data.get("process_s")),
            py_peak_mb=_opt_float(data.get("py_peak_mb")),
            jvm_peak_mb=_opt_float(data.get("jvm_peak_mb")),
            workers_peak_mb=_opt_float(data.get("workers_peak_mb")),
            quality=dict(data.get("quality") or {}),
            phases={k: float(v) for k, v in (data.get("phases") or {}).items()},
            error=None if data.get("error") is None else str(data["error"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "ok": self.ok,
            "wall_s": self.wall_s,
            "process_s": self.process_s,
            "py_peak_mb": self.py_peak_mb,
            "jvm_peak_mb": self.jvm_peak_mb,
            "workers_peak_mb": self.workers_peak_mb,
            "quality": self.quality,
            "phases": self.phases,
            "error": self.error,
        }


def median(values: Iterable[float | None]) -> float | None:
    """The median of the known values; None when there are none."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


@dataclass(frozen=True)
class Summary:
    """The repetitions of one measurement at one size, summarised by medians."""

    name: str
    size: int
    reps: tuple[Rep, ...]

    @property
    def ok_reps(self) -> tuple[Rep, ...]:
        return tuple(r for r in self.reps if r.ok)

    @property
    def ok(self) -> bool:
        return bool(self.ok_reps)

    @property
    def wall_s(self) -> float | None:
        return median(r.wall_s for r in self.ok_reps)

    @property
    def wall_range(self) -> tuple[float, float] | None:
        walls = [r.wall_s for r in self.ok_reps if r.wall_s is not None]
        return (min(walls), max(walls)) if walls else None

    @property
    def process_s(self) -> float | None:
        return median(r.process_s for r in self.ok_reps)

    @property
    def py_peak_mb(self) -> float | None:
        return median(r.py_peak_mb for r in self.ok_reps)

    @property
    def jvm_peak_mb(self) -> float | None:
        return median(r.jvm_peak_mb for r in self.ok_reps)

    @property
    def workers_peak_mb(self) -> float | None:
        return median(r.workers_peak_mb for r in self.ok_reps)

    @property
    def quality(self) -> Quality:
        """The quality numbers (the same in every repetition: data, split and seeds are fixed)."""
        return dict(self.ok_reps[0].quality) if self.ok_reps else {}

    def quality_spread(self, key: str) -> float:
        """How much a numeric quality value differs between repetitions (0 when it does not)."""
        values = [
            float(v) for r in self.ok_reps if isinstance(v := r.quality.get(key), int | float)
        ]
        return max(values) - min(values) if values else 0.0

    @property
    def error(self) -> str | None:
        errors = [r.error for r in self.reps if not r.ok and r.error]
        return errors[0] if errors else None


def summarize(reps: Iterable[Rep]) -> dict[tuple[str, int], Summary]:
    """Group repetitions by (measurement, size)."""
    grouped: dict[tuple[str, int], list[Rep]] = {}
    for rep in reps:
        grouped.setdefault((rep.name, rep.size), []).append(rep)
    return {key: Summary(key[0], key[1], tuple(group)) for key, group in grouped.items()}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is unknown or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One target: what was measured against what limit, and whether it was met (None: unknown)."""

    target: str
    measured: str
    limit: str
    met: bool | None
    note: str = ""

    @property
    def label(self) -> str:
        if self.met is None:
            return "not measured"
        return "met" if self.met else "**missed**"


def _missing(target: str, limit: str, *summaries: Summary | None) -> Verdict:
    why = []
    for s in summaries:
        if s is None:
            continue
        if not s.ok:
            why.append(f"{s.name} failed" + (f": {s.error}" if s.error else ""))
    return Verdict(target, "—", limit, None, "; ".join(why) or "not run")


def time_ratio_at_most(
    target: str, ours: Summary | None, other: Summary | None, limit: float
) -> Verdict:
    """ours.wall / other.wall <= limit."""
    text = f"≤ {limit:g}×"
    value = ratio(ours.wall_s if ours else None, other.wall_s if other else None)
    if value is None:
        return _missing(target, text, ours, other)
    return Verdict(target, f"{value:.2f}×", text, value <= limit)


def speedup_at_least(
    target: str, ours: Summary | None, slower: Summary | None, limit: float
) -> Verdict:
    """slower.wall / ours.wall >= limit."""
    text = f"≥ {limit:g}×"
    value = ratio(slower.wall_s if slower else None, ours.wall_s if ours else None)
    if value is None:
        return _missing(target, text, ours, slower)
    return Verdict(target, f"{value:.1f}× faster", text, value >= limit)


def auc_not_worse(
    target: str, ours: Summary | None, other: Summary | None, tolerance: float
) -> Verdict:
    """ours' test AUC >= other's - tolerance."""
    text = f"≥ reference − {tolerance:g}"
    a = ours.quality.get("test_auc") if ours and ours.ok else None
    b = other.quality.get("test_auc") if other and other.ok else None
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return _missing(target, text, ours, other)
    diff = float(a) - float(b)
    return Verdict(
        target, f"{float(a):.4f} vs {float(b):.4f} ({diff:+.4f})", text, diff >= -tolerance
    )


def scaling_time(name: str, base: Summary | None, scaled: Summary | None, factor: float) -> Verdict:
    """Time at `factor` x rows <= SCALE_TIME_PER_FACTOR * factor x the time at 1x."""
    limit = SCALE_TIME_PER_FACTOR * factor
    target = f"{name}: time at {factor:g}× rows ≤ {limit:g}× the time at 1×"
    return time_ratio_at_most(target, scaled, base, limit)


def scaling_memory(
    name: str, base: Summary | None, scaled: Summary | None, factor: float
) -> Verdict:
    """Driver JVM peak at `factor` x rows <= SCALE_MEMORY_MAX x the peak at 1x."""
    text = f"≤ {SCALE_MEMORY_MAX:g}×"
    target = f"{name}: driver JVM peak at {factor:g}× rows ≤ {SCALE_MEMORY_MAX:g}× the peak at 1×"
    value = ratio(scaled.jvm_peak_mb if scaled else None, base.jvm_peak_mb if base else None)
    if value is None or base is None or scaled is None:
        return _missing(target, text, base, scaled)
    measured = f"{value:.2f}× ({base.jvm_peak_mb:.0f} → {scaled.jvm_peak_mb:.0f} MB)"
    return Verdict(target, measured, text, value <= SCALE_MEMORY_MAX)


def evaluate_targets(
    summaries: Mapping[tuple[str, int], Summary], base_rows: int, scales: Sequence[float]
) -> dict[str, list[Verdict]]:
    """Every target, grouped like the tables (`scaling` for the 1x-vs-largest comparisons)."""

    def get(name: str, size: int = base_rows) -> Summary | None:
        return summaries.get((name, size))

    out: dict[str, list[Verdict]] = {
        "training": [
            time_ratio_at_most(
                "logistic regression CV: time ≤ 3× scikit-learn's",
                get("train_ours"),
                get("train_sklearn"),
                TRAIN_TIME_MAX,
            ),
            auc_not_worse(
                "logistic regression CV: test AUC ≥ scikit-learn's − 0.002",
                get("train_ours"),
                get("train_sklearn"),
                AUC_TOLERANCE,
            ),
        ],
        "gbt": [
            time_ratio_at_most(
                "GBT: time ≤ 1.5× scikit-learn's",
                get("train_gbt_ours"),
                get("train_gbt_sklearn"),
                GBT_TIME_MAX,
            ),
            auc_not_worse(
                "GBT: test AUC ≥ scikit-learn's − 0.002",
                get("train_gbt_ours"),
                get("train_gbt_sklearn"),
                AUC_TOLERANCE,
            ),
            time_ratio_at_most(
                "XGBoost: time ≤ 2× scikit-learn's",
                get("train_xgb"),
                get("train_gbt_sklearn"),
                XGB_TIME_MAX,
            ),
            auc_not_worse(
                "XGBoost: test AUC ≥ scikit-learn's − 0.002",
                get("train_xgb"),
                get("train_gbt_sklearn"),
                AUC_TOLERANCE,
            ),
        ],
        "scoring": [
            time_ratio_at_most(
                "scoring: time ≤ 1.3× the Delta copy (I/O floor)",
                get("score_ours"),
                get("score_io_floor"),
                SCORE_FLOOR_MAX,
            ),
            speedup_at_least(
                "scoring: ≥ 10× faster than spark_udf",
                get("score_ours"),
                get("score_spark_udf"),
                UDF_MIN_SPEEDUP,
            ),
        ],
        "tree_scoring": [
            time_ratio_at_most(
                "tree-champion scoring: time ≤ 1.5× the Delta copy (I/O floor)",
                get("score_tree_ours"),
                get("score_io_floor"),
                TREE_SCORE_FLOOR_MAX,
            ),
        ],
        "ingest": [
            time_ratio_at_most(
                "ingest: time ≤ 1.5× the plain CSV → Delta copy",
                get("ingest_ours"),
                get("ingest_plain"),
                INGEST_MAX,
            )
        ],
        "scaling": [],
    }
    larger = [s for s in scales if s > 1]
    if larger:
        top = max(larger)
        top_rows = scaled_rows(base_rows, top)
        for name in SCALED:
            out["scaling"].append(scaling_time(name, get(name), get(name, top_rows), top))
            out["scaling"].append(scaling_memory(name, get(name), get(name, top_rows), top))
    return out


def scaled_rows(base_rows: int, factor: float) -> int:
    """Rows at a scale factor of the base size."""
    return round(base_rows * factor)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "—" if value is None else format(value, fmt)


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def format_quality(quality: Mapping[str, float | int | str], spread: Mapping[str, float]) -> str:
    """The quality numbers of a measurement as one compact cell."""
    labels = {
        "chosen": "chosen",
        "cv_auc": "CV AUC",
        "test_auc": "test AUC",
        "rows_scored": "rows",
        "rows_written": "rows written",
        "rows_read": "rows read",
        "rows_accepted": "accepted",
        "rows_quarantined": "quarantined",
    }
    parts = []
    for key, value in quality.items():
        label = labels.get(key, key)
        if isinstance(value, float):
            text = f"{value:.4f}"
            if spread.get(key, 0.0) > 1e-9:
                text += f" (±{spread[key] / 2:.4f} across reps)"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = value
        parts.append(text if key == "chosen" else f"{label} {text}")
    return "; ".join(parts) or "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def group_table(group: Group, summaries: Mapping[tuple[str, int], Summary], size: int) -> str:
    """One Markdown table: a row per measurement of the group at `size`."""
    head = (
        "| measurement | median wall s (min–max) | × "
        + group.baseline
        + " | process s | Python peak MB | JVM peak MB | workers peak MB | quality |"
    )
    lines = [head, "|" + " --- |" * 8]
    base = summaries.get((group.baseline, size))
    for name in group.names:
        s = summaries.get((name, size))
        if s is None:
            continue
        if not s.ok:
            lines.append(
                f"| {name} | failed | — | {_num(median(r.process_s for r in s.reps))} | — | — | — "
                f"| {_cell(s.error or 'no result')} |"
            )
            continue
        rng = s.wall_range
        wall = f"{_num(s.wall_s, '.2f')}" + (
            f" ({rng[0]:.2f}–{rng[1]:.2f})" if rng and len(s.ok_reps) > 1 else ""
        )
        r = ratio(s.wall_s, base.wall_s if base and base.ok else None)
        spread = {k: s.quality_spread(k) for k in s.quality}
        lines.append(
            f"| {name} | {wall} | {_num(r, '.2f')} | {_num(s.process_s)} | {_mb(s.py_peak_mb)} "
            f"| {_mb(s.jvm_peak_mb)} | {_mb(s.workers_peak_mb)} "
            f"| {_cell(format_quality(s.quality, spread))} |"
        )
    return "\n".join(lines)


def scaling_table(
    summaries: Mapping[tuple[str, int], Summary], base_rows: int, scales: Sequence[float]
) -> str:
    """Time per row and driver peak memory of our paths at each scale."""
    lines = [
        "| measurement | scale | rows | median wall s | µs / row | time vs 1× | JVM peak MB "
        "| JVM peak vs 1× |",
        "|" + " --- |" * 8,
    ]
    for name in SCALED:
        base = summaries.get((name, base_rows))
        for factor in scales:
            rows = scaled_rows(base_rows, factor)
            s = summaries.get((name, rows))
            if s is None:
                continue
            if not s.ok:
                lines.append(
                    f"| {name} | {factor:g}× | {rows:,} | failed | — | — | — | {_cell(s.error or '')} |"
                )
                continue
            per_row = None if s.wall_s is None else s.wall_s / rows * 1e6
            t = ratio(s.wall_s, base.wall_s if base and base.ok else None)
            m = ratio(s.jvm_peak_mb, base.jvm_peak_mb if base and base.ok else None)
            lines.append(
                f"| {name} | {factor:g}× | {rows:,} | {_num(s.wall_s, '.2f')} | {_num(per_row, '.2f')} "
                f"| {_num(t, '.2f')} | {_mb(s.jvm_peak_mb)} | {_num(m, '.2f')} |"
            )
    return "\n".join(lines)


def phase_table(summaries: Mapping[tuple[str, int], Summary], size: int) -> str:
    """Where the time went: the median of each named phase (spark_start and warmup are not timed)."""
    lines = ["| measurement | phases, median s |", "| --- | --- |"]
    for group in GROUPS:
        for name in group.names:
            s = summaries.get((name, size))
            if s is None or not s.ok:
                continue
            keys = list(dict.fromkeys(k for r in s.ok_reps for k in r.phases))
            parts = []
            for key in keys:
                value = median(r.phases.get(key) for r in s.ok_reps)
                if value is not None:
                    parts.append(f"{key} {value:.2f}")
            lines.append(f"| {name} | {_cell(', '.join(parts) or '—')} |")
    return "\n".join(lines)


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    lines = ["| target | measured | limit | verdict |", "| --- | --- | --- | --- |"]
    for v in verdicts:
        verdict = v.label + (f" ({_cell(v.note)})" if v.note else "")
        lines.append(f"| {_cell(v.target)} | {_cell(v.measured)} | {v.limit} | {verdict} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class ReportInput:
    """Everything the report shows."""

    machine: Mapping[str, str]
    settings: Mapping[str, str]
    base_rows: int
    scales: tuple[float, ...]
    reps: tuple[Rep, ...]
    notes: tuple[str, ...] = ()
    command: str = ""


METHOD = """\
How it was measured:

* Every repetition of every measurement is a fresh process (`python scripts/bench.py --one NAME
  --size N`) that prints one JSON line; the tables show the median over the repetitions.
* **wall s** is the timed work inside that process: from the first read of the input to the last
  write or metric, after the interpreter, imports and the Spark session have started and (unless
  `--no-warmup`, see Settings) a 10-row Delta table has been written and read back, so that the
  class loading every new JVM pays once is not charged to the first measurement's rows (a nightly
  run pays it once for all its stages). **process s** is the whole process from start to exit,
  start-up included; the ratios use wall s.
* **Python peak MB** and **JVM peak MB** are the kernel's high-water marks (`VmHWM` in
  `/proc/PID/status`) of the measurement's Python process and of its driver JVM (the `java` child
  that PySpark launches), read by the parent every 0.2 s. **workers peak MB** is the peak of the
  summed proportional set size (`Pss`, shared pages split among sharers) of every other descendant
  (PySpark's Python workers, scikit-learn's joblib workers, and the JVMs that `spark_udf` starts
  inside its Python workers), sampled every 0.2 s; "—" means there were none.
* Every Spark measurement uses the project's session builder (`pipeline.session.build_spark`) with
  the same environment's `SparkConfig`; the data set of a size is generated once (Spark, Delta)
  and exported once to Parquet with its `_split` and `_fold` columns, so scikit-learn fits and
  tests on exactly the rows and folds our code uses.
* scikit-learn's `C` is mapped from MLlib's `regParam` λ as C = 1/(λ·n_train), n_train being the
  training split's rows (MLlib minimises mean log-loss + λ/2·‖w‖², scikit-learn C·Σ log-loss +
  ½‖w‖²). Inside a CV fold scikit-learn fits ⅔ of those rows with the same C, i.e. a 1.5× stronger
  effective penalty; MLlib also standardises the one-hot columns for its penalty (scikit-learn does
  not). Both solvers run at most 100 L-BFGS iterations.
* `HistGradientBoostingClassifier` runs with `early_stopping=False` (its default stops early above
  10,000 rows, which would be doing less) and `max_leaf_nodes=None` (depth-5 trees may have 32
  leaves, like MLlib's; the default caps them at 31). Both bin each feature into 255 bins
  (`maxBins: 255` for MLlib, whose default is 32).
* Our training evaluates 2 grid points at a time (`train.parallelism: 2`), and scikit-learn runs
  with `n_jobs=2`: both use the machine's 2 cores. The naive `CrossValidator` keeps parallelism 1.
* The spark_udf path goes through MLflow's Spark flavour, whose pyfunc returns the class
  `prediction` (not the probability) and loads the model in a local Spark session inside each
  Python worker; its `score` column therefore holds that prediction.
"""


def render_report(data: ReportInput) -> str:
    """The whole BENCHMARKS.md."""
    summaries = summarize(data.reps)
    verdicts = evaluate_targets(summaries, data.base_rows, data.scales)
    out = ["# Benchmarks", ""]
    out.append(
        "`make bench` runs our paths and the alternatives side by side on the same generated data, "
        "each repetition in a fresh process, and reports ratios against the targets below. It "
        "reports; it never fails on a missed target."
    )
    out.append("")
    if data.command:
        out += [f"Command: `{data.command}`", ""]
    if data.base_rows != TARGET_ROWS:
        out.append(
            f"> **Base size {data.base_rows:,} rows.** The targets are stated at "
            f"{TARGET_ROWS:,} rows (and {TARGET_ROWS * 4:,} for scaling); at this size fixed costs "
            "weigh more, so the verdicts below are indicative only. Run "
            '`make bench BENCH_ARGS="--rows 1000000"` for the stated sizes.'
        )
        out.append("")
    all_verdicts = [v for group in verdicts.values() for v in group]
    met = sum(1 for v in all_verdicts if v.met)
    missed = sum(1 for v in all_verdicts if v.met is False)
    unknown = sum(1 for v in all_verdicts if v.met is None)
    out.append(f"**Targets: {met} met, {missed} missed, {unknown} not measured.**")
    out.append("")
    out.append("## Machine")
    out.append("")
    out.append("| | |")
    out.append("| --- | --- |")
    for key, value in data.machine.items():
        out.append(f"| {key} | {_cell(value)} |")
    out.append("")
    out.append("## Settings")
    out.append("")
    out.append("| | |")
    out.append("| --- | --- |")
    for key, value in data.settings.items():
        out.append(f"| {key} | {_cell(value)} |")
    out.append("")
    for group in GROUPS:
        if not any((name, data.base_rows) in summaries for name in group.names):
            continue
        out.append(f"## {group.title}")
        out.append("")
        out.append(f"{data.base_rows:,} rows; ratios against `{group.baseline}`.")
        out.append("")
        out.append(group_table(group, summaries, data.base_rows))
        out.append("")
        for name in group.names:
            if (name, data.base_rows) in summaries:
                out.append(f"* `{name}`: {DESCRIPTIONS[name]}")
        out.append("")
        if verdicts[group.key]:
            out.append(verdict_table(verdicts[group.key]))
            out.append("")
    if any(
        (name, scaled_rows(data.base_rows, f)) in summaries
        for name in SCALED
        for f in data.scales
        if f != 1
    ):
        out.append(
            "## Scaling: our training and scoring at " + ", ".join(f"{f:g}×" for f in data.scales)
        )
        out.append("")
        out.append(scaling_table(summaries, data.base_rows, data.scales))
        out.append("")
        if verdicts["scaling"]:
            out.append(verdict_table(verdicts["scaling"]))
            out.append("")
    if any((name, data.base_rows) in summaries for name in DESCRIPTIONS):
        out.append("## Phases")
        out.append("")
        out.append(
            f"{data.base_rows:,} rows. `spark_start` and `warmup` happen before the clock starts "
            "(they are in process s, not in wall s)."
        )
        out.append("")
        out.append(phase_table(summaries, data.base_rows))
        out.append("")
    if data.notes:
        out.append("## Notes")
        out.append("")
        out += [f"* {note}" for note in data.notes]
        out.append("")
    out.append("## Method")
    out.append("")
    out.append(METHOD)
    return "\n".join(out).rstrip() + "\n"
