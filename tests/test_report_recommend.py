"""The training report of a recommendation run: ALS grid points chosen on a ranking metric, the
model against the most-popular baseline (with lift), no threshold, no score histogram. The page
has the ranking plot and the baseline comparison, shows every count (users, pairs) as a whole
number, and renders in headless Chromium with every image decoded; the Markdown and the console
lines agree with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.report import write_report_files
from pipeline.report.console import render_console
from pipeline.report.html import render_html
from pipeline.report.markdown import render_markdown
from pipeline.report.plots import draw_plots
from pipeline.report.summary import (
    GateOutcome,
    GridPoint,
    RankingComparison,
    TableInput,
    TrainingSummary,
)
from tests.test_report import Page, assert_nothing_cut_off, assert_renders_with_every_image

USERS = 109
MODEL = {"precision_at_k": 0.0844, "recall_at_k": 0.2311, "ndcg_at_k": 0.1893, "map_at_k": 0.1205}
BASELINE = {
    "precision_at_k": 0.0413,
    "recall_at_k": 0.1178,
    "ndcg_at_k": 0.0871,
    "map_at_k": 0.0502,
}


def recommendation_summary() -> TrainingSummary:
    """A nightly ALS run shaped like pipeline.train.recommend builds it."""
    metric = "ndcg_at_k"
    points = [
        GridPoint(
            "als", "als", {"rank": 10, "regParam": 0.01, "alpha": 10.0}, [0.171, 0.183, 0.176]
        ),
        GridPoint(
            "als", "als", {"rank": 10, "regParam": 0.1, "alpha": 10.0}, [0.181, 0.192, 0.186]
        ),
        GridPoint(
            "als", "als", {"rank": 20, "regParam": 0.1, "alpha": 10.0}, [0.166, 0.174, 0.170]
        ),
    ]
    test = {
        **MODEL,
        **{f"baseline_{k}": v for k, v in BASELINE.items()},
        "users": float(USERS),  # as ranking.mean_metrics returns it
        "ndcg_lift_over_baseline": MODEL["ndcg_at_k"] / BASELINE["ndcg_at_k"],
    }
    return TrainingSummary(
        pipeline="recommendation",
        task="recommendation",
        run_date="2026-01-10",
        metric=metric,
        folds=3,
        search="grid",
        fits=9,
        candidates=points,
        winner=1,
        test=test,
        overfitting={
            f"train_{metric}": 0.3412,
            f"cv_{metric}": points[1].mean,
            f"test_{metric}": MODEL[metric],
            "overfit_gap_train_minus_test": 0.3412 - MODEL[metric],
            "overfit_gap_cv_minus_test": points[1].mean - MODEL[metric],
        },
        threshold=None,
        rows={
            "train": 5_821,
            "test": 1_377,
            "test_relevant": 402,
            "train_users": 240,
            "test_users_evaluated": USERS,
        },
        ranking=RankingComparison(k=10, users=USERS, model=MODEL, baseline=BASELINE),
        inputs={
            "features": TableInput("file:///srv/mlpipe/data/tables/recommendation/features", 9)
        },
        tags={"git_commit": "909d9b8c41e7a0f3d2b65e8c1a4f7d90e3b2c615", "run_date": "2026-01-10"},
        durations_s={"split": 4.2, "cross_validation": 61.0, "refit": 7.5, "evaluate": 9.9},
        gate=GateOutcome(True, "first model", metric, 0.002, challenger_metric=MODEL[metric]),
        model_name="recommendation_model",
        model_version="1",
        split="time",
    )


@pytest.fixture(scope="module")
def reco(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingSummary, list[Path]]:
    summary = recommendation_summary()
    return summary, draw_plots(summary, tmp_path_factory.mktemp("reco-plots"))


@pytest.fixture(scope="module")
def reco_page(reco: tuple[TrainingSummary, list[Path]]) -> str:
    return render_html(*reco)


def test_a_recommendation_run_has_only_the_ranking_plot(
    reco: tuple[TrainingSummary, list[Path]], reco_page: str
) -> None:
    assert [p.name for p in reco[1]] == ["ranking_vs_popularity.png"]
    dom = Page(reco_page)
    [img] = dom.images()
    assert img["alt"] == "Ranking metrics vs the most-popular baseline"
    assert "ranking_vs_popularity.png" in dom.by_id["plots"]
    assert 'data-images-expected="1"' in reco_page


def test_the_ranking_plot_is_not_cut_off() -> None:
    from pipeline.report.plots import ranking_figure

    fig = ranking_figure(recommendation_summary())
    assert_nothing_cut_off(fig)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "precision@10",
        "recall@10",
        "ndcg@10",
        "map@10",
    ]


def test_the_model_is_compared_with_the_popularity_baseline_with_its_lift(reco_page: str) -> None:
    dom = Page(reco_page)
    head, *rows = dom.tables["ranking"]
    assert head[1] == ["metric", "model", "most popular", "lift"]
    assert [cells for _, cells in rows] == [
        [name.replace("_at_k", "@10"), f"{MODEL[name]:.4f}", f"{BASELINE[name]:.4f}", lift]
        for name, lift in (
            ("precision_at_k", "×2.04"),
            ("recall_at_k", "×1.96"),
            ("ndcg_at_k", "×2.17"),
            ("map_at_k", "×2.40"),
        )
    ]
    assert "Top 10 recommendations for 109 held-out users" in dom.by_id["ranking"]


def test_counts_are_whole_numbers_not_metrics(reco_page: str) -> None:
    dom = Page(reco_page)
    metrics = {cells[0]: cells[1] for _, cells in dom.tables["metrics"][1:]}
    assert metrics["users"] == "109"
    assert metrics["ndcg_at_k"] == "0.1893"
    assert metrics["ndcg_lift_over_baseline"] == "2.1734"
    rows = {cells[0]: cells[1] for _, cells in dom.tables["rows"][1:]}
    assert rows == {
        "training (user, item) pairs": "5,821",
        "test (user, item) pairs (held out)": "1,377",
        "test pairs to find (known users, items not seen in training)": "402",
        "users in training": "240",
        "test users evaluated": "109",
    }
    assert "109.0000" not in reco_page


def test_markdown_and_console_show_counts_whole_and_the_baseline() -> None:
    summary = recommendation_summary()
    md = render_markdown(summary)
    assert "| users | 109 |" in md
    assert "| test users evaluated | 109 |" in md
    assert "Top 10 for 109 held-out users." in md
    assert "| ndcg@10 | 0.1893 | 0.0871 | ×2.17 |" in md
    assert "Decision threshold" not in md
    console = render_console(summary)
    assert "'users': 109," in console
    assert "'users': 109.0" not in console


def test_a_recommender_has_no_threshold_and_no_confusion(reco_page: str) -> None:
    dom = Page(reco_page)
    assert '<strong class="threshold">' not in reco_page
    assert "a recommender ranks items for each user; it has no decision threshold" in reco_page
    assert "confusion" not in dom.tables
    [marked] = [cells for attrs, cells in dom.tables["candidates"] if attrs.get("data-winner")]
    assert marked[3] == "rank=10 regParam=0.1 alpha=10.0"
    assert "higher is better" in reco_page


def test_the_report_files_of_a_recommendation_run(tmp_path: Path) -> None:
    summary = recommendation_summary()
    files = write_report_files(summary, tmp_path)
    assert [p.name for p in files.plots] == ["ranking_vs_popularity.png"]
    data = json.loads(files.summary_json.read_text(encoding="utf-8"))
    assert TrainingSummary.from_dict(data) == summary
    assert data["ranking"]["users"] == USERS


@pytest.mark.browser
def test_chromium_renders_the_recommendation_page_with_every_image(
    reco_page: str, tmp_path: Path
) -> None:
    dom = assert_renders_with_every_image(reco_page, 1, tmp_path)
    assert "Training report: recommendation" in dom
    assert "Against the most-popular baseline" in dom
    assert "×2.17" in dom
