"""MLflow model registry: log the whole PipelineModel, register it, gate the champion alias."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import RunError
from pipeline.faults import crash_point

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

CHAMPION = "champion"
THRESHOLD_TAG = "decision_threshold"
# The training run's ledger row as JSON, set on the version before the champion alias moves.
LEDGER_TAG = "ledger"


@dataclass(frozen=True)
class GateDecision:
    """Whether a new model version took the champion alias, and why."""

    promoted: bool
    reason: str
    challenger_metric: float | None = None
    champion_metric: float | None = None
    champion_version: str | None = None
    gain_lower_bound: float | None = None  # with a bootstrap: the gain's lower confidence bound


@dataclass(frozen=True)
class GateInputs:
    """How the gate measures a model on the held-out test set.

    `score` gives a model's metric on the whole test set; `bootstrap_gains`, when set, gives the
    challenger's gain over the champion on each paired bootstrap replicate of that set (signed so
    that positive is better).
    """

    metric: str
    score: Callable[[PipelineModel], float]
    bootstrap_gains: Callable[[PipelineModel, PipelineModel], list[float]] | None = None
    # A model-free baseline the challenger must beat by the margin to be promoted at all
    # (recommendation: the most-popular items, or the mean rating): (its name, its metric).
    baseline: tuple[str, float] | None = None


def pip_requirements(model: PipelineModel | None = None) -> list[str]:
    """Explicit requirements: inferring them costs ~14 s per logged model. A model with an
    XGBoost stage also needs the xgboost package to load."""
    from importlib.metadata import version

    names = ["pyspark", "mlflow", "pandas", "pyarrow", "numpy"]
    if model is not None and any(
        type(stage).__module__.startswith("xgboost") for stage in model.stages
    ):
        names.append("xgboost-cpu")
    return [f"{name}=={version(name)}" for name in names]


def package_dir() -> Path:
    """A real folder holding this `pipeline` package, to ship with a logged model.

    Under spark-submit the package is imported from the `--py-files` zip, which MLflow cannot copy
    from: the package is then extracted to a temporary folder first.
    """
    import tempfile
    import zipfile

    import pipeline

    here = Path(pipeline.__file__).parent
    if here.is_dir():
        return here
    archive = next(p for p in here.parents if p.is_file())
    target = Path(tempfile.mkdtemp(prefix="mlpipe-code-"))
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(target, members=[n for n in zf.namelist() if n.startswith("pipeline/")])
    return target / "pipeline"


def log_and_register(
    spark: SparkSession,
    model: PipelineModel,
    example_df: DataFrame,
    *,
    name: str,
    threshold: float | None,
    tags: dict[str, str],
) -> str:
    """Log `model` (preprocessing + estimator) in the active run and register it; its version."""
    import mlflow
    import mlflow.spark
    from mlflow import MlflowClient
    from mlflow.models import Model, infer_signature

    inputs = [c for c in example_df.columns if not c.startswith("_")]
    sample = example_df.select(*inputs).limit(5)
    out = model.transform(sample).select("prediction")
    example = sample.toPandas()
    signature = infer_signature(example, out.toPandas())
    # MLflow 3's logging path (`Model.log`): the model becomes a LoggedModel that the registered
    # version links to, with the run's metrics and dataset inputs. `mlflow.spark.log_model` still
    # takes the older path for Spark models (no LoggedModel, a version linked to the run only).
    info = Model.log(
        artifact_path=None,
        name="model",
        flavor=mlflow.spark,
        spark_model=model,
        registered_model_name=name,
        signature=signature,
        # Five test rows as the model's input example (MLflow checks the model serves them).
        input_example=example,
        pip_requirements=pip_requirements(model),
        # Custom stages (e.g. rare-category grouping) live in this package: ship it with the model.
        code_paths=[str(package_dir())],
    )
    version = str(info.registered_model_version)
    crash_point("train.after_log_model")
    client = MlflowClient()
    for key, value in {**tags, THRESHOLD_TAG: "" if threshold is None else repr(threshold)}.items():
        client.set_model_version_tag(name, version, key, value)
    crash_point("train.after_register")
    return version


def champion_version(name: str) -> str | None:
    """The version holding the champion alias; None only when the model or the alias does not
    exist. A registry that cannot be read is a `RunError`: "no champion" must never be guessed
    from an error, or the gate would promote a challenger unchecked."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        model = MlflowClient().get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise RunError(f"cannot read model '{name}' from the registry: {exc.message}") from exc
    except OSError as exc:  # the registry server did not answer
        raise RunError(f"cannot reach the model registry for '{name}': {exc}") from exc
    version = (model.aliases or {}).get(CHAMPION)
    return str(version) if version is not None else None


def load_version(name: str, version: str) -> tuple[PipelineModel, float | None]:
    """One registered version as a native Spark PipelineModel, and its decision threshold."""
    import mlflow.spark
    from mlflow import MlflowClient

    model = mlflow.spark.load_model(f"models:/{name}/{version}")
    tag = MlflowClient().get_model_version(name, version).tags.get(THRESHOLD_TAG, "")
    return model, float(tag) if tag else None


def load_champion(name: str) -> tuple[PipelineModel, str, float | None]:
    """The champion as a native Spark PipelineModel, its version and its decision threshold.

    The alias is resolved once, to a version, and that version is loaded: a promotion in between
    cannot make the rows say one version while another scored them.
    """
    version = champion_version(name)
    if version is None:
        raise RunError(f"model '{name}' has no champion yet: run `mlpipe train` first")
    model, threshold = load_version(name, version)
    return model, version, threshold


@dataclass(frozen=True)
class Champion:
    """The champion model version, loaded: what scoring needs and records on every row."""

    name: str
    version: str
    model: PipelineModel
    threshold: float | None
    run_id: str
    tags: dict[str, str]


def current_champion(name: str) -> Champion:
    """The champion of model `name`, loaded as a native Spark PipelineModel; a `RunError` when
    there is none."""
    from mlflow import MlflowClient

    model, version, threshold = load_champion(name)
    mv = MlflowClient().get_model_version(name, version)
    return Champion(name, version, model, threshold, mv.run_id or "", dict(mv.tags))


def gate_and_promote(
    name: str,
    version: str,
    challenger: PipelineModel,
    inputs: GateInputs,
    *,
    margin: float,
    higher_is_better: bool,
    confidence: float = 0.95,
    decided: Callable[[GateDecision], None] | None = None,
) -> GateDecision:
    """Score challenger and champion on the whole same test set (by Spark); move the alias only
    when the challenger is better by more than `margin` (and, with a bootstrap, when the lower
    confidence bound of its gain is too). A challenger that does not beat the baseline (when
    given) by the margin is never promoted; otherwise the first model is. `decided` is called
    with the decision before the alias moves (what a crash right after the move must not lose
    is recorded there)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    metric = inputs.metric
    current = champion_version(name)
    challenger_metric = inputs.score(challenger)
    beaten = _beats_baseline(inputs, challenger_metric, margin, higher_is_better)
    if beaten is not None:
        decision = GateDecision(False, beaten, challenger_metric, None, current)
    elif current is None:
        decision = GateDecision(True, "first model: no champion yet", challenger_metric)
    else:
        champion, _ = load_version(name, current)
        champion_metric = inputs.score(champion)
        gain = (
            challenger_metric - champion_metric
            if higher_is_better
            else champion_metric - challenger_metric
        )
        promoted = gain > margin
        reason = (
            f"{metric} {challenger_metric:.4f} vs champion v{current} {champion_metric:.4f} "
            f"(gain {gain:+.4f}, margin {margin})"
        )
        lower = None
        if inputs.bootstrap_gains is not None:
            gains = inputs.bootstrap_gains(challenger, champion)
            lower = lower_bound(gains, confidence)
            promoted = promoted and lower > margin
            reason += (
                f"; {confidence:.0%} lower bound of the gain {lower:+.4f} "
                f"over {len(gains)} bootstrap replicates"
            )
        decision = GateDecision(
            promoted, reason, challenger_metric, champion_metric, current, lower
        )
    if decided is not None:
        decided(decision)
    if decision.promoted:
        crash_point("train.before_alias")
        client.set_registered_model_alias(name, CHAMPION, version)
        crash_point("train.after_alias")
    client.set_model_version_tag(
        name,
        version,
        "gate",
        ("promoted: " if decision.promoted else "refused: ") + decision.reason,
    )
    log.info("gate for %s v%s: %s", name, version, decision.reason)
    return decision


def _beats_baseline(
    inputs: GateInputs, challenger_metric: float, margin: float, higher_is_better: bool
) -> str | None:
    """Why the challenger is refused for not beating the baseline by the margin, or None."""
    if inputs.baseline is None:
        return None
    what, value = inputs.baseline
    gain = challenger_metric - value if higher_is_better else value - challenger_metric
    if gain > margin:
        return None
    return (
        f"{inputs.metric} {challenger_metric:.4f} does not beat the {what} baseline's "
        f"{value:.4f} by more than the margin {margin} (gain {gain:+.4f})"
    )


def lower_bound(gains: list[float], confidence: float) -> float:
    """The one-sided lower percentile bound of bootstrap gains (-inf without replicates)."""
    if not gains:
        return float("-inf")
    ordered = sorted(gains)
    index = min(len(ordered) - 1, max(0, int((1.0 - confidence) * len(ordered))))
    return ordered[index]
