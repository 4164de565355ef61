"""Layered configuration: overlays, env interpolation, overrides, and errors naming file and key."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.config.loader import list_pipelines
from pipeline.errors import ConfigError
from tests.helpers import CONF_DIR, ROOT


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A private copy of the real configuration directory, safe to break."""
    target = tmp_path / "conf"
    shutil.copytree(CONF_DIR, target)
    return target


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("env", ["local", "test", "cluster"])
def test_every_shipped_environment_and_pipeline_validates(env: str) -> None:
    for name in [None, *list_pipelines(CONF_DIR)]:
        cfg = load_config(name, env=env, conf_dir=CONF_DIR)
        assert cfg.storage.tables.split("://")[0] in ("file", "hdfs")
        if name is not None:
            assert cfg.require_pipeline().name == name


def test_overlay_overrides_base_and_relative_paths_resolve_to_project(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLPIPE_DATA", raising=False)
    write(conf / "local" / "project.yml", "spark:\n  master: local[3]\n  shuffle_partitions: 5\n")
    cfg = load_config(env="local", conf_dir=conf)
    assert (cfg.spark.master, cfg.spark.shuffle_partitions) == ("local[3]", 5)
    # untouched base values survive the merge
    assert cfg.spark.driver_memory == "4g"
    project = conf.parent.resolve()
    assert cfg.storage.tables == f"file://{project}/data/tables"
    assert cfg.mlflow.tracking_uri == f"sqlite:///{project}/data/mlflow.db"


def test_set_overrides_are_typed_and_applied_last(conf: Path) -> None:
    cfg = load_config(
        env="test",
        conf_dir=conf,
        overrides=["spark.shuffle_partitions=7", "spark.ui_enabled=true", "spark.master=local[1]"],
    )
    assert cfg.spark.shuffle_partitions == 7
    assert cfg.spark.ui_enabled is True
    assert cfg.spark.master == "local[1]"


def test_misspelt_key_names_file_and_key(conf: Path) -> None:
    overlay = write(conf / "test" / "project.yml", "spark:\n  mastr: local[2]\n")
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert err.value.file == str(overlay)
    assert err.value.key == "spark.mastr"
    assert "unknown key" in str(err.value)


def test_wrong_type_names_file_and_key(conf: Path) -> None:
    overlay = write(conf / "test" / "project.yml", "spark:\n  shuffle_partitions: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert err.value.file == str(overlay)
    assert err.value.key is not None
    assert err.value.key.startswith("spark.shuffle_partitions")


def test_missing_required_value_names_the_key(conf: Path) -> None:
    base = conf / "base" / "project.yml"
    text = base.read_text().replace("  tables: ${MLPIPE_DATA:-data}/tables", "")
    base.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert (err.value.file, err.value.key) == (str(base), "storage.tables")
    assert "required key is missing" in str(err.value)


@pytest.mark.parametrize(
    ("uri", "phrase"),
    [
        ("s3://bucket/tables", "use s3a://"),
        ("ftp://host/tables", "unsupported URI scheme"),
        ("hdfs:///no-host", "names no host"),
    ],
)
def test_bad_storage_uri_is_rejected(conf: Path, uri: str, phrase: str) -> None:
    overlay = write(conf / "test" / "project.yml", f"storage:\n  tables: {uri}\n")
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert (err.value.file, err.value.key) == (str(overlay), "storage.tables")
    assert phrase in str(err.value)


def test_invalid_yaml_names_file_and_line(conf: Path) -> None:
    overlay = write(conf / "test" / "project.yml", "spark:\n  master: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert err.value.file == str(overlay)
    assert "line" in str(err.value)


def test_unreadable_file_is_a_config_error(conf: Path) -> None:
    overlay = conf / "test" / "project.yml"
    overlay.unlink()
    overlay.mkdir()  # a directory where a file is expected cannot be read as one
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert err.value.file == str(overlay)
    assert "cannot read file" in str(err.value)


def test_env_interpolation_with_and_without_default(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        conf / "test" / "project.yml",
        "spark:\n  app_name: ${APP_NAME_FOR_TEST:-fallback}\n  master: ${MASTER_FOR_TEST}\n",
    )
    monkeypatch.setenv("MASTER_FOR_TEST", "local[1]")
    monkeypatch.delenv("APP_NAME_FOR_TEST", raising=False)
    cfg = load_config(env="test", conf_dir=conf)
    assert (cfg.spark.master, cfg.spark.app_name) == ("local[1]", "fallback")

    monkeypatch.delenv("MASTER_FOR_TEST")
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert err.value.key == "spark.master"
    assert "MASTER_FOR_TEST is not set" in str(err.value)


def test_secret_from_environment_never_appears_in_error(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("TOKEN_FOR_TEST", secret)
    write(
        conf / "test" / "project.yml",
        "spark:\n  driver_memory: ${TOKEN_FOR_TEST}\n  shuffle_partitions: ${TOKEN_FOR_TEST}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf)
    assert "spark.driver_memory" in str(err.value)
    assert secret not in str(err.value)


def test_unknown_environment_and_pipeline_list_the_known_ones(conf: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'prod' \(known: .*cluster"):
        load_config(env="prod", conf_dir=conf)
    with pytest.raises(ConfigError, match=r"no pipeline named 'nope'"):
        load_config("nope", env="test", conf_dir=conf)


def test_set_addresses_list_items_by_index(conf: Path) -> None:
    cfg = load_config(
        "fraud",
        env="test",
        conf_dir=conf,
        overrides=["pipeline.train.candidates.1.params.maxIter=5"],
    )
    train = cfg.require_pipeline().train
    assert train is not None
    assert [c.params.get("maxIter") for c in train.candidates] == [50, 5]
    with pytest.raises(ConfigError) as err:
        load_config(
            "fraud", env="test", conf_dir=conf, overrides=["pipeline.train.candidates.7.name=x"]
        )
    assert (err.value.file, err.value.key) == ("--set", "pipeline.train.candidates.7")
    assert "2 items" in str(err.value)


def test_bad_set_override_is_rejected(conf: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env="test", conf_dir=conf, overrides=["spark.nonsense=1"])
    assert (err.value.file, err.value.key) == ("--set", "spark.nonsense")
    with pytest.raises(ConfigError, match=r"KEY\.PATH=VALUE"):
        load_config(env="test", conf_dir=conf, overrides=["no-equals-sign"])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter; also report whether pyspark.sql was ever imported."""
    code = (
        "import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
        "print('SPARK_IMPORTED=' + str('pyspark.sql' in sys.modules)); sys.exit(rc)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_cli_rejects_bad_config_with_exit_2_before_spark_starts(conf: Path) -> None:
    overlay = write(conf / "test" / "project.yml", "storage:\n  tabels: /tmp/x\n")
    result = run_cli("check", "--env", "test", "--conf-dir", str(conf))
    assert result.returncode == 2
    assert f"{overlay}, line 2, key 'storage.tabels': unknown key" in result.stderr
    assert "SPARK_IMPORTED=False" in result.stdout


COMMANDS = [
    "generate",
    "ingest",
    "features",
    "train",
    "score",
    "nightly",
    "backfill",
    "status",
    "maintain",
    "demo",
    "init",
    "check",
    "config",
]


def test_cli_help_lists_exactly_the_commands_and_each_has_its_own_help() -> None:
    from pipeline.cli import build_parser

    _, handlers = build_parser()
    assert list(handlers) == COMMANDS
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.M), command
        sub = subprocess.run(
            [sys.executable, "-m", "pipeline", command, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.startswith(f"usage: mlpipe {command} "), sub.stdout[:200]
        if "--run-date" in sub.stdout:
            assert "yesterday in UTC" in " ".join(sub.stdout.split()), command


def test_run_date_defaults_to_yesterday_in_utc_for_every_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datetime as dt

    from pipeline import cli
    from pipeline.rundate import default_run_date

    late = dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert default_run_date(late) == dt.date(2026, 3, 1)  # 04:59 UTC on 2 March
    assert default_run_date(dt.datetime(2026, 3, 1, 0, 1, tzinfo=dt.timezone.utc)) == dt.date(
        2026, 2, 28
    )
    seen: dict[str, dt.date] = {}
    parser, handlers = cli.build_parser()

    def record(inv: cli.Invocation) -> int:
        seen[inv.args.command] = inv.args.run_date
        return 0

    monkeypatch.setattr(cli, "build_parser", lambda: (parser, dict.fromkeys(handlers, record)))
    for command in ("ingest", "features", "train", "score", "nightly"):
        assert cli.main([command, "--pipeline", "fraud", "--env", "test"]) == 0
    assert set(seen.values()) == {default_run_date()}


def test_cli_usage_error_exits_2() -> None:
    result = run_cli("ingest", "--run-date", "2026-13-45", "--pipeline", "fraud")
    assert result.returncode == 2
    assert "not a date in YYYY-MM-DD form" in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "key", "phrase"),
    [
        # ALS in a classification pipeline
        (
            "algorithm: logistic_regression",
            "algorithm: als",
            "pipeline.train.candidates.0.algorithm",
            "algorithm 'als' does not apply to a binary_classification task",
        ),
        # a ranking metric for a classifier
        (
            "metric: areaUnderPR ",
            "metric: ndcg_at_k ",
            "pipeline.train.metric",
            "'ndcg_at_k' does not apply",
        ),
    ],
)
def test_algorithm_and_metric_must_fit_the_task(
    conf: Path, old: str, new: str, key: str, phrase: str
) -> None:
    spec = conf / "base" / "pipelines" / "fraud.yml"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_config("fraud", env="test", conf_dir=conf)
    assert (err.value.file, err.value.key) == (str(spec), key)
    assert phrase in str(err.value)


def test_recommendation_needs_its_recommend_section(conf: Path) -> None:
    spec = conf / "base" / "pipelines" / "recommendation.yml"
    text = spec.read_text()
    start = text.index("recommend:\n")
    spec.write_text(text[:start] + text[text.index("train:\n") :])
    with pytest.raises(ConfigError) as err:
        load_config("recommendation", env="test", conf_dir=conf)
    assert (err.value.file, err.value.key) == (str(spec), "pipeline.recommend")
    assert "needs a `recommend` section" in str(err.value)
