"""Helpers shared by the tests (one copy, imported)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import AppConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def local_path(uri: str) -> str:
    """The local path of a file:// URI (for readers that take paths)."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


def make_config(
    tmp_path: Path,
    pipeline_yaml: str | None = None,
    *,
    name: str = "t",
    overrides: list[str] | None = None,
) -> AppConfig:
    """A `test`-env configuration whose landing and tables live under `tmp_path`.

    With `pipeline_yaml`, it is the spec of pipeline `name` (written into a private conf copy).
    """
    import shutil
    import textwrap

    conf = tmp_path / "conf"
    if not conf.exists():
        shutil.copytree(CONF_DIR, conf)
    if pipeline_yaml is not None:
        (conf / "base" / "pipelines" / f"{name}.yml").write_text(textwrap.dedent(pipeline_yaml))
    sets = [
        f"storage.landing={tmp_path / 'landing'}",
        f"storage.tables={tmp_path / 'tables'}",
        *(overrides or []),
    ]
    return load_config(
        name if pipeline_yaml is not None else None, env="test", conf_dir=conf, overrides=sets
    )


def assert_config_refused(
    tmp_path: Path, pipeline_yaml: str, name: str, key: str, phrase: str
) -> None:
    """Loading `pipeline_yaml` as pipeline `name` fails before Spark, naming `key` and saying
    `phrase`."""
    import pytest

    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, pipeline_yaml, name=name)
    assert err.value.key == key
    assert phrase in str(err.value)


def tracked_config(tmp_path: Path, pipeline_yaml: str, name: str) -> AppConfig:
    """`make_config` with MLflow tracking, artifacts and reports under `tmp_path`, and MLflow
    configured from it (what a training test needs)."""
    from pipeline.tracking import configure_mlflow

    cfg = make_config(
        tmp_path,
        pipeline_yaml,
        name=name,
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"mlflow.artifact_location={tmp_path}/artifacts",
            f"storage.reports={tmp_path}/reports",
        ],
    )
    configure_mlflow(cfg.mlflow)
    return cfg
