"""The benchmark's pure helpers (scripts/benchlib/report.py, the plan of scripts/bench.py): the
regParam -> C mapping, ratios and target verdicts, and the report rendered from fake measurement
JSON. No Spark and no timing here."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench
from benchlib.report import (
    AUC_TOLERANCE,
    Rep,
    ReportInput,
    Summary,
    auc_not_worse,
    evaluate_targets,
    format_quality,
    median,
    ratio,
    regparam_to_c,
    render_report,
    scaling_memory,
    scaling_time,
    speedup_at_least,
    summarize,
    time_ratio_at_most,
)

BASE = 1_000_000


def rep(
    name: str,
    wall: float | None,
    *,
    size: int = BASE,
    jvm: float | None = 1000.0,
    ok: bool = True,
    error: str | None = None,
    **quality: float | int | str,
) -> Rep:
    """A repetition as the parent records it, through the same JSON path."""
    data: dict[str, Any] = {
        "name": name,
        "size": size,
        "ok": ok,
        "wall_s": wall,
        "process_s": None if wall is None else wall + 10,
        "py_peak_mb": 150.0,
        "jvm_peak_mb": jvm,
        "workers_peak_mb": None,
        "quality": quality,
        "phases": {"spark_start": 5.0},
        "error": error,
    }
    return Rep.from_json(data)


def summary(*reps: Rep) -> Summary:
    return Summary(reps[0].name, reps[0].size, reps)


# --------------------------------------------------------------------------------------------------
# regParam -> C
# --------------------------------------------------------------------------------------------------


def test_c_is_one_over_regparam_times_rows() -> None:
    assert regparam_to_c(0.01, 1000) == pytest.approx(0.1)
    assert regparam_to_c(1.0, 800_000) == pytest.approx(1.25e-6)
    values = [regparam_to_c(r, 800_000) for r in (0.001, 0.01, 0.1, 1.0)]
    assert values == sorted(values, reverse=True)  # more regularisation, smaller C


def test_the_two_objectives_differ_only_by_a_positive_factor() -> None:
    # MLlib: mean loss + λ/2 ||w||²; scikit-learn: C Σ loss + ½ ||w||². With C = 1/(λ n) the second
    # is (C n) times the first for every w, so both have the same minimiser.
    losses = [0.3, 1.2, 0.05, 0.7]
    n, lam = len(losses), 0.1
    c = regparam_to_c(lam, n)
    for norm2 in (0.0, 0.5, 3.0):
        mllib = sum(losses) / n + lam / 2 * norm2
        sklearn = c * sum(losses) + 0.5 * norm2
        assert sklearn == pytest.approx(c * n * mllib)


@pytest.mark.parametrize(("reg", "rows"), [(0.0, 10), (-1.0, 10), (0.1, 0)])
def test_c_mapping_rejects_non_positive_inputs(reg: float, rows: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        regparam_to_c(reg, rows)


# --------------------------------------------------------------------------------------------------
# Records, medians, ratios
# --------------------------------------------------------------------------------------------------


def test_rep_round_trips_through_json() -> None:
    r = rep("train_ours", 12.5, chosen="regParam=0.001", test_auc=0.81)
    assert Rep.from_json(r.to_json()) == r


def test_summary_takes_medians_of_successful_reps_only() -> None:
    s = summary(
        rep("score_ours", 10.0, jvm=900.0),
        rep("score_ours", 30.0, jvm=1100.0),
        rep("score_ours", 20.0, jvm=1000.0),
        rep("score_ours", None, ok=False, error="boom"),
    )
    assert s.wall_s == 20.0
    assert s.wall_range == (10.0, 30.0)
    assert s.jvm_peak_mb == 1000.0
    assert s.process_s == 30.0
    assert s.error == "boom"
    assert median([None, None]) is None


def test_quality_spread_is_zero_when_repetitions_agree() -> None:
    s = summary(rep("train_ours", 1.0, test_auc=0.8), rep("train_ours", 2.0, test_auc=0.8))
    assert s.quality_spread("test_auc") == 0.0
    t = summary(rep("train_ours", 1.0, test_auc=0.8), rep("train_ours", 2.0, test_auc=0.81))
    assert t.quality_spread("test_auc") == pytest.approx(0.01)


def test_ratio_is_unknown_without_both_numbers() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------


def test_time_ratio_target_met_at_the_limit_and_missed_above_it() -> None:
    sk = summary(rep("train_sklearn", 100.0))
    met = time_ratio_at_most("t", summary(rep("train_ours", 150.0)), sk, 1.5)
    missed = time_ratio_at_most("t", summary(rep("train_ours", 151.0)), sk, 1.5)
    assert (met.met, met.measured, met.label) == (True, "1.50×", "met")
    assert (missed.met, missed.label) == (False, "**missed**")


def test_missing_or_failed_measurements_give_no_verdict() -> None:
    failed = summary(rep("train_sklearn", None, ok=False, error="MemoryError: x"))
    v = time_ratio_at_most("t", summary(rep("train_ours", 1.0)), failed, 1.5)
    assert v.met is None
    assert v.label == "not measured"
    assert "train_sklearn failed: MemoryError" in v.note
    assert time_ratio_at_most("t", None, None, 1.5).note == "not run"


def test_speedup_target_compares_the_slower_path_to_ours() -> None:
    ours = summary(rep("score_ours", 10.0))
    assert speedup_at_least("s", ours, summary(rep("score_spark_udf", 100.0)), 10).met is True
    assert speedup_at_least("s", ours, summary(rep("score_spark_udf", 99.0)), 10).met is False


def test_auc_target_allows_the_tolerance_and_no_more() -> None:
    sk = summary(rep("train_sklearn", 1.0, test_auc=0.8000))
    just = summary(rep("train_ours", 1.0, test_auc=0.8000 - AUC_TOLERANCE + 1e-9))
    below = summary(rep("train_ours", 1.0, test_auc=0.8000 - AUC_TOLERANCE - 1e-4))
    assert auc_not_worse("a", just, sk, AUC_TOLERANCE).met is True
    assert auc_not_worse("a", below, sk, AUC_TOLERANCE).met is False
    no_auc = summary(rep("train_ours", 1.0))
    assert auc_not_worse("a", no_auc, sk, AUC_TOLERANCE).met is None


def test_scaling_targets_scale_with_the_factor() -> None:
    base = summary(rep("train_ours", 100.0, jvm=1000.0))
    at4 = summary(rep("train_ours", 450.0, size=4 * BASE, jvm=1200.0))
    slow = summary(rep("train_ours", 451.0, size=4 * BASE, jvm=1201.0))
    assert scaling_time("train_ours", base, at4, 4).met is True
    assert scaling_time("train_ours", base, slow, 4).met is False
    assert scaling_memory("train_ours", base, at4, 4).met is True
    assert scaling_memory("train_ours", base, slow, 4).met is False
    # At 2x the time limit is 2.25x.
    at2 = summary(rep("train_ours", 226.0, size=2 * BASE))
    assert scaling_time("train_ours", base, at2, 2).limit == "≤ 2.25×"
    assert scaling_time("train_ours", base, at2, 2).met is False


def fake_run() -> list[Rep]:
    """Every measurement at 1M rows and the scaled ones at 2M and 4M, some targets missed."""
    reps = [
        rep("train_ours", 120.0, chosen="regParam=0.001", cv_auc=0.801, test_auc=0.8030),
        rep("train_ours", 130.0, chosen="regParam=0.001", cv_auc=0.801, test_auc=0.8030),
        rep("train_naive_mllib", 600.0, chosen="regParam=0.001", cv_auc=0.801, test_auc=0.8030),
        rep("train_sklearn", 100.0, chosen="C=1.25e-06 (regParam=0.001)", test_auc=0.8040),
        rep("train_gbt_ours", 300.0, test_auc=0.8100),
        rep("train_xgb", 39.0, test_auc=0.8140),
        rep("train_gbt_sklearn", 20.0, jvm=None, test_auc=0.8150),
        rep("score_ours", 12.0, rows_written=BASE),
        rep("score_spark_udf", 240.0, rows_written=BASE),
        rep("score_io_floor", 10.0, rows_written=BASE),
        rep("score_tree_ours", 14.0, rows_written=BASE, scoring_path="compiled"),
        rep("score_tree_transform", 41.0, rows_written=BASE, scoring_path="transform"),
        rep("ingest_ours", 50.0, rows_read=BASE, rows_accepted=BASE - 10, rows_quarantined=10),
        rep("ingest_plain", None, ok=False, error="AnalysisException: path | not found"),
    ]
    for factor, wall, jvm in ((2, 250.0, 1100.0), (4, 520.0, 1300.0)):
        reps.append(rep("train_ours", wall, size=factor * BASE, jvm=jvm))
        reps.append(rep("score_ours", 12.0 * factor, size=factor * BASE, jvm=jvm))
    return reps


def test_evaluate_targets_on_a_fake_run() -> None:
    verdicts = evaluate_targets(summarize(fake_run()), BASE, (1.0, 2.0, 4.0))
    by_target = {v.target: v for group in verdicts.values() for v in group}
    assert by_target["logistic regression CV: time ≤ 3× scikit-learn's"].met is True  # 1.3
    assert by_target["logistic regression CV: test AUC ≥ scikit-learn's − 0.002"].met is True
    assert by_target["GBT: time ≤ 1.5× scikit-learn's"].met is False
    assert by_target["GBT: test AUC ≥ scikit-learn's − 0.002"].met is False
    assert by_target["XGBoost: time ≤ 2× scikit-learn's"].met is True  # 39 / 20
    assert by_target["XGBoost: test AUC ≥ scikit-learn's − 0.002"].met is True  # 0.8140
    assert by_target["scoring: time ≤ 1.3× the Delta copy (I/O floor)"].met is True
    assert by_target["scoring: ≥ 10× faster than spark_udf"].met is True
    assert by_target["tree-champion scoring: time ≤ 1.5× the Delta copy (I/O floor)"].met is True
    assert by_target["ingest: time ≤ 1.5× the plain CSV → Delta copy"].met is None
    scaling = {v.target: v.met for v in verdicts["scaling"]}
    assert scaling == {
        "train_ours: time at 4× rows ≤ 4.5× the time at 1×": True,  # 520 / 125 = 4.16
        "train_ours: driver JVM peak at 4× rows ≤ 1.2× the peak at 1×": False,  # 1.3
        "score_ours: time at 4× rows ≤ 4.5× the time at 1×": True,  # 4.0
        "score_ours: driver JVM peak at 4× rows ≤ 1.2× the peak at 1×": False,
    }


def test_no_scaling_targets_without_a_larger_scale() -> None:
    verdicts = evaluate_targets(summarize(fake_run()), BASE, (1.0,))
    assert verdicts["scaling"] == []


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def report(base_rows: int = BASE, reps: list[Rep] | None = None) -> str:
    return render_report(
        ReportInput(
            machine={"CPU": "Test CPU, 2 logical cores", "RAM": "8.0 GiB"},
            settings={"base rows": f"{base_rows:,}"},
            base_rows=base_rows,
            scales=(1.0, 2.0, 4.0),
            reps=tuple(reps if reps is not None else fake_run()),
            notes=("a note",),
            command="scripts/bench.py --rows 1000000",
        )
    )


def _row(text: str, name: str) -> list[str]:
    line = next(li for li in text.splitlines() if li.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_report_has_a_table_per_group_with_medians_ratios_and_quality() -> None:
    text = report()
    for title in ("## Training: logistic regression", "## Training: gradient-boosted trees"):
        assert title in text
    assert "## Scoring" in text
    assert "## Ingest" in text
    assert "## Scaling" in text
    assert "## Machine" in text
    assert "| CPU | Test CPU, 2 logical cores |" in text
    cells = _row(text, "train_ours")
    assert cells[1] == "125.00 (120.00–130.00)"  # median, min–max
    assert cells[2] == "1.25"  # × train_sklearn
    assert "regParam=0.001" in cells[-1]
    assert "test AUC 0.8030" in cells[-1]
    assert _row(text, "train_gbt_sklearn")[5] == "—"  # no JVM
    assert "Command: `scripts/bench.py --rows 1000000`" in text
    assert "* a note" in text


def test_report_marks_missed_targets_and_failed_measurements() -> None:
    text = report()
    assert "**missed**" in text
    assert "| met |" in text
    assert "not measured" in text
    failed = _row(text, "ingest_plain")
    assert failed[1] == "failed"
    assert "AnalysisException: path \\| not found" in text  # pipes escaped inside a cell
    assert "**Targets:" in text


def test_report_says_when_the_base_size_is_not_the_targets_size() -> None:
    reps = [
        Rep.from_json({**r.to_json(), "size": r.size // 10})
        for r in fake_run()
        if r.name != "ingest_plain"
    ]
    text = report(100_000, reps)
    assert "**Base size 100,000 rows.**" in text
    assert "indicative only" in text
    assert "Base size" not in report()


def test_scaling_table_gives_time_per_row() -> None:
    text = report()
    line = next(li for li in text.splitlines() if li.startswith("| train_ours | 4× |"))
    cells = [c.strip() for c in line.strip("|").split(" | ")]
    assert cells[2] == "4,000,000"
    assert float(cells[4]) == pytest.approx(520.0 / 4_000_000 * 1e6, abs=0.01)
    assert float(cells[5]) == pytest.approx(520.0 / 125.0, abs=0.01)


def test_phases_are_listed_with_their_medians() -> None:
    text = report()
    phases = text.split("## Phases", 1)[1]
    assert _row(phases, "train_ours")[1] == "spark_start 5.00"


def test_format_quality_keeps_the_chosen_parameters_first_and_unlabelled() -> None:
    text = format_quality(
        {"chosen": "regParam=0.01", "test_auc": 0.81234, "rows_written": 1000}, {}
    )
    assert text == "regParam=0.01; test AUC 0.8123; rows written 1,000"


# --------------------------------------------------------------------------------------------------
# The plan and the child protocol (scripts/bench.py)
# --------------------------------------------------------------------------------------------------


def test_plan_runs_every_measurement_at_the_base_size_and_ours_at_the_larger_ones() -> None:
    plan = bench.Plan(
        rows=1000,
        scales=(1.0, 2.0, 4.0),
        reps=3,
        ingest_rows=1000,
        names=("train_ours", "train_sklearn", "score_ours"),
        sklearn_jobs=2,
    )
    assert plan.sizes == [1000, 2000, 4000]
    assert plan.runs() == [
        ("train_ours", 1000),
        ("train_sklearn", 1000),
        ("score_ours", 1000),
        ("train_ours", 2000),
        ("score_ours", 2000),
        ("train_ours", 4000),
        ("score_ours", 4000),
    ]


def test_child_json_is_the_last_json_line_of_stdout() -> None:
    out = 'noise\n{"not": "this"}\nmore noise\n{"name": "x", "ok": true}\n'
    assert bench._last_json(out) == {"name": "x", "ok": True}
    assert bench._last_json("no json here\n{broken") is None


def test_quick_and_explicit_options() -> None:
    args = bench.parse_args(["--quick", "--reps", "2", "--only", "train_ours,score_ours"])
    assert args.quick
    assert args.reps == 2
    assert args.only == ("train_ours", "score_ours")
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "nope"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--scale", "1,-2"])
    assert math.isclose(bench.parse_args(["--scale", "1,2.5"]).scale[1], 2.5)
