"""Configuration the loader must refuse (exit 2, file, key and line, before Spark), shell
semantics of ${VAR:-default} and ${VAR-default}, `mlpipe config`, and the redaction layer that
keeps secrets out of every output. Fast, no Spark."""

from __future__ import annotations

import io
import json
import logging
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.config.loader import resolve_config
from pipeline.config.reader import MAX_FILE_BYTES
from pipeline.config.show import render
from pipeline.errors import ConfigError
from pipeline.redact import (
    REDACTOR,
    RedactingStream,
    installed,
    is_secret_name,
    redact,
    redact_value,
)
from tests.helpers import CONF_DIR, ROOT


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(CONF_DIR, target)
    return target


def overlay(conf: Path, text: str) -> Path:
    path = conf / "test" / "project.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refused(conf: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_config("fraud", env="test", conf_dir=conf)
    return err.value


# --- ${VAR:-default} and ${VAR-default} as in a POSIX shell -----------------------------------


@pytest.mark.parametrize(
    ("value", "template", "expected"),
    [
        (None, "${MLPIPE_T_VAR:-dflt}", "dflt"),
        ("", "${MLPIPE_T_VAR:-dflt}", "dflt"),  # set but empty: the default too
        ("given", "${MLPIPE_T_VAR:-dflt}", "given"),
        (None, "${MLPIPE_T_VAR-dflt}", "dflt"),
        ("", "${MLPIPE_T_VAR-dflt}", ""),  # set but empty: empty, as in a shell
        ("given", "${MLPIPE_T_VAR-dflt}", "given"),
        ("", "x${MLPIPE_T_VAR}y", "xy"),
    ],
)
def test_env_defaults_follow_shell_semantics(
    conf: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, template: str, expected: str
) -> None:
    if value is None:
        monkeypatch.delenv("MLPIPE_T_VAR", raising=False)
    else:
        monkeypatch.setenv("MLPIPE_T_VAR", value)
    overlay(conf, f"spark:\n  app_name: 'app-{template}'\n")
    assert load_config(env="test", conf_dir=conf).spark.app_name == f"app-{expected}"


def test_empty_data_folder_variable_falls_back_to_the_default_not_the_file_system_root(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPE_DATA", "")
    cfg = load_config(env="local", conf_dir=conf)
    assert cfg.storage.tables != "file:///tables"
    assert cfg.storage.tables.endswith("/data/tables")


def test_unset_variable_without_default_names_file_key_and_line(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLPIPE_T_MISSING", raising=False)
    path = overlay(conf, "spark:\n  app_name: ok\n  master: ${MLPIPE_T_MISSING}\n")
    err = refused(conf)
    assert (err.file, err.key, err.line) == (str(path), "spark.master", 3)
    assert "MLPIPE_T_MISSING is not set" in str(err)


# --- files the loader refuses ------------------------------------------------------------------


def test_a_file_that_is_not_utf8_is_refused_with_its_line(conf: Path) -> None:
    path = conf / "test" / "project.yml"
    path.write_bytes(b"spark:\n  app_name: caf\xe9\n")  # Latin-1, not UTF-8
    err = refused(conf)
    assert (err.file, err.line) == (str(path), 2)
    assert "not UTF-8" in str(err)


def test_a_key_given_twice_is_refused_naming_both_lines(conf: Path) -> None:
    path = overlay(conf, "spark:\n  master: local[1]\n  app_name: a\n  master: local[2]\n")
    err = refused(conf)
    assert (err.file, err.key, err.line) == (str(path), "spark.master", 4)
    assert "lines 2 and 4" in str(err)


def test_a_section_given_twice_is_refused_not_replaced(conf: Path) -> None:
    path = overlay(
        conf, "storage:\n  lease_ttl: 5m\nspark:\n  app_name: a\nstorage:\n  lease_ttl: 1m\n"
    )
    err = refused(conf)
    assert (err.file, err.key) == (str(path), "storage")
    assert "lines 1 and 5" in str(err)


def test_a_duplicate_deep_in_a_pipeline_spec_names_its_file_and_key(conf: Path) -> None:
    spec = conf / "base" / "pipelines" / "fraud.yml"
    text = spec.read_text().replace("  folds:", "  folds: 3\n  folds:", 1)
    spec.write_text(text)
    err = refused(conf)
    assert (err.file, err.key) == (str(spec), "pipeline.train.folds")


def test_merge_keys_are_not_duplicates(conf: Path) -> None:
    overlay(
        conf,
        """
        spark:
          conf: &common
            spark.sql.ansi.enabled: "true"
          app_name: merged
        storage:
          lease_ttl: 5m
        """,
    )
    assert load_config(env="test", conf_dir=conf).spark.app_name == "merged"


def test_an_alias_bomb_is_refused_at_once(conf: Path) -> None:
    # Nine levels of nine aliases: 387 million values once expanded, 100 bytes on disk.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = overlay(conf, "\n".join(lines) + "\n")
    started = time.monotonic()
    err = refused(conf)
    took = time.monotonic() - started
    assert err.file == str(path)
    assert "expands to more than" in str(err)
    assert took < 30, took  # not a timing target: a hang here would be the bug itself


def test_a_file_over_the_size_bound_is_refused(conf: Path) -> None:
    path = conf / "test" / "project.yml"
    path.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    err = refused(conf)
    assert err.file == str(path)
    assert f"at most {MAX_FILE_BYTES} bytes" in str(err)


def test_validation_errors_name_the_line(conf: Path) -> None:
    path = overlay(conf, "spark:\n  app_name: a\n  shuffle_partitions: many\n")
    err = refused(conf)
    assert (err.file, err.key, err.line) == (str(path), "spark.shuffle_partitions", 3)


def test_each_refusal_exits_2_from_the_command_line_before_spark(conf: Path) -> None:
    (conf / "test" / "project.yml").write_bytes(b"spark:\n  app_name: \xff\n")
    code = (
        "import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
        "print('SPARK=' + str('pyspark.sql' in sys.modules)); sys.exit(rc)"
    )
    args = ["config", "--pipeline", "fraud", "--env", "test", "--conf-dir", str(conf)]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr
    assert "line 2" in done.stderr
    assert "Traceback" not in done.stderr
    assert "SPARK=False" in done.stdout


# --- mlpipe config -----------------------------------------------------------------------------


def test_config_shows_every_value_with_its_origin_and_masks_secrets(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    monkeypatch.setenv("MLPIPE_T_S3_SECRET", canary)
    monkeypatch.setenv("MLPIPE_T_DB_PASSWORD", canary + "db")
    path = overlay(
        conf,
        """
        spark:
          conf:
            spark.hadoop.fs.s3a.secret.key: ${MLPIPE_T_S3_SECRET}
            spark.hadoop.fs.s3a.endpoint: http://127.0.0.1:9000
        mlflow:
          tracking_uri: postgresql://mlpipe:${MLPIPE_T_DB_PASSWORD}@db.internal/mlflow
        """,
    )
    resolved = resolve_config(
        "fraud", env="test", conf_dir=conf, overrides=["pipeline.train.folds=4"]
    )
    shown = render(resolved)
    assert canary not in shown
    lines = {line.split(" = ", 1)[0]: line for line in shown.splitlines()}
    secret_line = lines["spark.conf.spark.hadoop.fs.s3a.secret.key"]
    assert " = ***" in secret_line
    assert f"# {path}:4 <- $MLPIPE_T_S3_SECRET" in secret_line
    assert "http://127.0.0.1:9000" in lines["spark.conf.spark.hadoop.fs.s3a.endpoint"]
    assert "postgresql://mlpipe:***@db.internal/mlflow" in lines["mlflow.tracking_uri"]
    assert lines["pipeline.train.folds"].endswith("# --set")
    assert "= 4 " in lines["pipeline.train.folds"]
    assert lines["storage.checkpoints"].endswith("# default")
    assert "fraud.yml:" in lines["pipeline.task"]


def test_config_command_prints_through_the_cli(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    canary = f"canary-{secrets.token_hex(8)}"
    monkeypatch.setenv("MLPIPE_T_TOKEN", canary)
    overlay(conf, "spark:\n  conf:\n    spark.hadoop.fs.gs.auth.access.token: ${MLPIPE_T_TOKEN}\n")
    assert main(["config", "-p", "fraud", "--env", "test", "--conf-dir", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "spark.conf.spark.hadoop.fs.gs.auth.access.token = ***" in out
    assert canary not in out


# --- the redaction layer -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("spark.hadoop.fs.s3a.secret.key", True),
        ("spark.hadoop.fs.s3a.access.key", True),
        ("fs.azure.account.key.acct.dfs.core.windows.net", True),
        ("fs.gs.auth.service.account.private.key", True),
        ("db_password", True),
        ("api_key", True),
        ("MLFLOW_TRACKING_TOKEN", True),
        ("credentials", True),
        ("key", True),
        ("spark.hadoop.fs.s3a.endpoint", False),
        ("tracking_uri", False),
        ("keyspace", False),
        ("monkey", False),
    ],
)
def test_secret_names(key: str, secret: bool) -> None:
    assert is_secret_name(key) is secret


def test_spark_redaction_regex_covers_azure_and_gcs_keys() -> None:
    import re

    from pipeline.redact import SPARK_REDACTION_REGEX

    pattern = re.compile(SPARK_REDACTION_REGEX)
    for key in (
        "fs.azure.account.key.acct.dfs.core.windows.net",
        "fs.gs.auth.service.account.private.key",
        "spark.hadoop.fs.s3a.secret.key",
        "fs.azure.sas.container.acct.blob.core.windows.net",
    ):
        assert pattern.search(key), key
    assert not pattern.search("spark.sql.shuffle.partitions")


def test_redactor_masks_registered_values_uri_passwords_and_secret_keys() -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    REDACTOR.add([canary])
    assert redact(f"failed: s3a://bucket/{canary}/x") == "failed: s3a://bucket/***/x"
    assert redact("http://bob:hunter22@host:5000/") == "http://bob:***@host:5000/"
    snapshot = redact_value(
        {
            "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": "literal-in-file"}},
            "pipeline": {"features": {"key": ["id"]}, "note": f"x {canary}"},
        }
    )
    assert snapshot == {
        "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": "***"}},
        "pipeline": {"features": {"key": ["id"]}, "note": "x ***"},
    }


def test_console_and_logs_are_masked_while_installed(caplog: pytest.LogCaptureFixture) -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    REDACTOR.add([canary])
    sink = io.StringIO()
    stream = RedactingStream(sink)
    stream.write(f"half {canary[:6]}")
    stream.write(f"{canary[6:]} done\n")  # a secret split across two writes is still masked
    stream.flush()
    assert sink.getvalue() == "half *** done\n"

    handler_out = io.StringIO()
    handler = logging.StreamHandler(handler_out)
    logging.getLogger().addHandler(handler)
    try:
        with installed():
            logging.getLogger("mlpipe.test").warning("connecting with %s", canary)
            try:
                raise RuntimeError(f"boom {canary}")
            except RuntimeError:
                logging.getLogger("mlpipe.test").exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    assert canary not in handler_out.getvalue()
    assert "connecting with ***" in handler_out.getvalue()
    assert "boom ***" in handler_out.getvalue()


def test_audit_messages_and_error_descriptions_are_masked() -> None:
    import datetime as dt

    from pipeline.io.audit import LedgerEntry
    from pipeline.io.raw import describe_error

    canary = f"canary-{secrets.token_hex(8)}"
    REDACTOR.add([canary])
    entry = LedgerEntry("r", "p", "ingest", dt.date(2026, 1, 1), message=f"denied {canary}")
    assert entry.as_row()["message"] == "denied ***"
    assert canary not in describe_error(OSError(f"403 for key {canary}"))
    assert json.dumps(entry.as_row(), default=str).count("***") == 1
