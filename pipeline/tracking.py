"""MLflow set-up in one place: tracking/registry URIs and one experiment per pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config.models import MlflowConfig
from pipeline.redact import redact, redact_value


def configure_mlflow(cfg: MlflowConfig) -> None:
    """Point the MLflow client at the configured tracking server / store and registry."""
    import mlflow

    for uri in (cfg.tracking_uri, cfg.registry_uri):
        if uri and uri.startswith("sqlite:///"):
            # SQLite creates the file but not its folder.
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.registry_uri or cfg.tracking_uri)


def experiment_name(cfg: MlflowConfig, pipeline: str) -> str:
    """The experiment of a pipeline: `<prefix>/<pipeline>`."""
    return f"{cfg.experiment_prefix}/{pipeline}"


def ensure_experiment(cfg: MlflowConfig, pipeline: str) -> str:
    """Create the pipeline's experiment if needed (with the configured artifact root); its id."""
    import mlflow

    configure_mlflow(cfg)
    name = experiment_name(cfg, pipeline)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if cfg.artifact_location:
        location = f"{cfg.artifact_location.rstrip('/')}/{pipeline}"
    return str(mlflow.create_experiment(name, artifact_location=location))


# What mlpipe writes into MLflow goes through these, so no secret reaches a param, tag or artifact
# (pipeline.redact). Model artifacts hold no configuration.
def log_params(params: dict[str, Any]) -> None:
    """`mlflow.log_params`, secrets masked."""
    import mlflow

    mlflow.log_params({k: redact(str(v)) for k, v in params.items()})


def set_tags(tags: dict[str, Any]) -> None:
    """`mlflow.set_tags`, secrets masked."""
    import mlflow

    mlflow.set_tags({k: redact(str(v)) for k, v in tags.items()})


def log_dict(data: dict[str, Any], artifact_file: str) -> None:
    """`mlflow.log_dict`, secrets masked (values under secret-named keys entirely)."""
    import mlflow

    mlflow.log_dict(redact_value(data), artifact_file)
