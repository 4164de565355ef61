"""The names a configuration chooses from: algorithms and metrics, and which task each fits."""

from __future__ import annotations

from typing import Literal

Algorithm = Literal[
    "logistic_regression",
    "random_forest",
    "gbt",
    "linear_svc",
    "naive_bayes",
    "linear_regression",
    "random_forest_regressor",
    "gbt_regressor",
    "xgboost",
    "xgboost_regressor",
    "als",
]

CLASSIFIER_ALGORITHMS = (
    "logistic_regression",
    "random_forest",
    "gbt",
    "linear_svc",
    "naive_bayes",
    "xgboost",
)
REGRESSOR_ALGORITHMS = (
    "linear_regression",
    "random_forest_regressor",
    "gbt_regressor",
    "xgboost_regressor",
)

Metric = Literal[
    "areaUnderPR",
    "areaUnderROC",
    "f1",
    "accuracy",
    "rmse",
    "mae",
    "r2",
    "ndcg_at_k",
    "map_at_k",
    "precision_at_k",
    "recall_at_k",
]
CLASSIFICATION_METRICS = ("areaUnderPR", "areaUnderROC", "f1", "accuracy")
REGRESSION_METRICS = ("rmse", "mae", "r2")
RANKING_METRICS = ("ndcg_at_k", "map_at_k", "precision_at_k", "recall_at_k")
RATING_METRICS = ("rmse", "mae")  # recommendation with explicit feedback
