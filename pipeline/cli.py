"""The `mlpipe` command line (also `python -m pipeline` and the `jobs/*.py` spark-submit entry points).

Exit codes: 0 success, 1 run failure, 2 usage or configuration error (raised before Spark starts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import AppConfig, load_config
from pipeline.config.loader import Resolved, resolve_config
from pipeline.console import FILE_FORMAT, run_console
from pipeline.errors import ConfigError, PipelineError
from pipeline.io.audit import new_run_id
from pipeline.redact import installed
from pipeline.rundate import default_run_date

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("mlpipe")
trace = logging.getLogger("mlpipe.trace")  # tracebacks for the run's log file, never the console

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# The commands that use the tracking server or the model registry (the others never import MLflow).
TRACKED_COMMANDS = frozenset(
    {"train", "score", "nightly", "backfill", "maintain", "status", "demo", "check"}
)


@dataclass(frozen=True)
class Invocation:
    """What a command handler receives: parsed arguments and the validated configuration."""

    args: argparse.Namespace
    config: AppConfig
    resolved: Resolved | None = None  # the configuration with each value's origin

    def spark(self) -> SparkSession:
        """The SparkSession (built on first use, after the configuration was validated)."""
        from pipeline.session import build_spark

        name = self.config.pipeline.name if self.config.pipeline else "project"
        storage = self.config.storage
        return build_spark(
            self.config.spark,
            app_name=f"mlpipe-{self.args.command}-{name}",
            storage=(storage.landing, storage.tables, storage.checkpoints),
        )


Handler = Callable[[Invocation], int]


def _run_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date in YYYY-MM-DD form") from None


def _common(parser: argparse.ArgumentParser, *, pipeline: bool, run_date: bool) -> None:
    group = parser.add_argument_group("configuration")
    if pipeline:
        group.add_argument(
            "--pipeline",
            "-p",
            required=True,
            metavar="NAME",
            help="pipeline spec: conf/base/pipelines/NAME.yml",
        )
    if run_date:
        group.add_argument(
            "--run-date",
            type=_run_date,
            metavar="YYYY-MM-DD",
            help="the logical date of the run (default: yesterday in UTC, the last day that has "
            "ended, as the cron wrapper and the Airflow DAG pass it)",
        )
    group.add_argument(
        "--env",
        metavar="ENV",
        help="configuration overlay conf/ENV/ (default: $MLPIPE_ENV or 'local')",
    )
    group.add_argument(
        "--conf-dir",
        type=Path,
        metavar="DIR",
        help="configuration directory (default: $MLPIPE_CONF_DIR or ./conf)",
    )
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value, e.g. --set spark.master=local[2]",
    )
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")


def _ingest(inv: Invocation) -> int:
    from pipeline.ingest.runner import run_ingest

    entries = run_ingest(inv.spark(), inv.config, run_date=inv.args.run_date, run_id=new_run_id())
    for entry in entries:
        print(entry.summary())
    return EXIT_OK


def _features(inv: Invocation) -> int:
    from pipeline.features.runner import run_features

    inv.config.require_pipeline().require_features()  # before Spark starts
    entry = run_features(inv.spark(), inv.config, run_date=inv.args.run_date, run_id=new_run_id())
    print(entry.summary())
    return EXIT_OK


def _train(inv: Invocation) -> int:
    from pipeline.train.runner import check_training, run_train

    check_training(inv.config)  # before Spark starts
    result = run_train(inv.spark(), inv.config, run_date=inv.args.run_date, run_id=new_run_id())
    print(result.describe())
    print(f"report: {result.report_dir}")
    return EXIT_OK


def _score(inv: Invocation) -> int:
    from pipeline.score.runner import run_score

    entry = run_score(inv.spark(), inv.config, run_date=inv.args.run_date, run_id=new_run_id())
    print(entry.summary())
    return EXIT_OK


def _nightly(inv: Invocation) -> int:
    from pipeline.nightly import run_nightly

    result = run_nightly(inv.spark(), inv.config, run_date=inv.args.run_date, run_id=new_run_id())
    print(result.summary())
    return EXIT_OK


def _backfill(inv: Invocation) -> int:
    from pipeline.backfill import run_backfill
    from pipeline.nightly import backfill_summary

    results = run_backfill(
        inv.spark(),
        inv.config,
        first=inv.args.date_from,
        last=inv.args.date_to,
        run_id=new_run_id(),
        night_by_night=inv.args.night_by_night,
    )
    for result in results:  # every night in full in the run's log file
        log.info(result.summary())
    print(backfill_summary(results))
    return EXIT_OK


def _maintain(inv: Invocation) -> int:
    from pipeline.maintain import run_maintain

    result = run_maintain(inv.spark(), inv.config, run_date=inv.args.run_date, run_id=new_run_id())
    print(result.summary())
    return EXIT_OK


def _status(inv: Invocation) -> int:
    from pipeline.status import pipeline_status

    print(pipeline_status(inv.spark(), inv.config))
    return EXIT_OK


def _demo(inv: Invocation) -> int:
    from pipeline.demo import USE_CASE, DemoPlan, run_demo

    args = inv.args
    config = load_config(USE_CASE, env=args.env, conf_dir=args.conf_dir, overrides=args.overrides)
    plan = DemoPlan(args.days, args.rows_per_day, args.start_date, args.seed)
    return run_demo(inv.spark(), config, plan)


def _generate(inv: Invocation) -> int:
    from pipeline.generate import check_request, generate

    args = inv.args
    out = args.out or f"{inv.config.storage.landing.rstrip('/')}/{args.use_case}"
    # Validated before Spark starts; only remote output needs (and starts) Spark.
    remote = check_request(
        args.use_case, out, days=args.days, rows_per_day=args.rows_per_day, seed=args.seed
    )
    report = generate(
        args.use_case,
        out,
        days=args.days,
        rows_per_day=args.rows_per_day,
        start_date=args.start_date,
        seed=args.seed,
        gzip=bool(args.gzip),
        spark=inv.spark() if remote else None,
    )
    print(report.summary())
    return EXIT_OK


def _config(inv: Invocation) -> int:
    from pipeline.config.show import render

    assert inv.resolved is not None  # main() always passes it
    print(render(inv.resolved))
    return EXIT_OK


def _init(inv: Invocation) -> int:
    from pipeline.config.loader import default_conf_dir
    from pipeline.init import write_draft

    args = inv.args
    conf = Path(args.conf_dir) if args.conf_dir else default_conf_dir()
    opts = {k: getattr(args, k) for k in ("format", "label", "test", "weight", "force")}
    print(write_draft(inv.spark, conf, args.name, args.source, positive=args.positive, **opts))
    return EXIT_OK


def _check(inv: Invocation) -> int:
    from pipeline.check import run_check

    report = run_check(inv.spark(), inv.config)
    print(report)
    return EXIT_OK


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The argument parser and the handler of each subcommand."""
    parser = argparse.ArgumentParser(
        prog="mlpipe",
        description="Batch ML pipeline on Spark: ingest -> features -> train -> score, "
        "with Delta tables and MLflow.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    handlers: dict[str, Handler] = {}

    def add(
        name: str, help_text: str, handler: Handler, *, pipeline: bool = True, run_date: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, pipeline=pipeline, run_date=run_date)
        handlers[name] = handler
        return p

    gen = add(
        "generate",
        "write realistic sample raw files for a use case into a landing folder",
        _generate,
        pipeline=False,
        run_date=False,
    )
    gen.add_argument(
        "use_case", metavar="USE_CASE", help="fraud, maintenance, recommendation or churn"
    )
    gen.add_argument("--out", metavar="URI", help="landing folder (default: <landing>/<use case>)")
    gen.add_argument("--days", type=int, default=3, help="number of daily drops (default 3)")
    gen.add_argument("--rows-per-day", type=int, default=10_000, metavar="N")
    gen.add_argument("--start-date", type=_run_date, default=dt.date(2026, 1, 1))
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--gzip", action="store_true", help="write .csv.gz files instead of .csv")

    add(
        "ingest",
        "raw files -> bronze Delta table (new files only, bad rows quarantined)",
        _ingest,
    )
    add(
        "features",
        "bronze -> feature Delta table (clean, deduplicate, derive, label)",
        _features,
    )
    add(
        "train",
        "cross-validate candidates, evaluate, register, gate the champion",
        _train,
    )
    add(
        "score",
        "score the run date's rows with the champion into the predictions table",
        _score,
    )
    add(
        "nightly",
        "ingest -> features -> (retrain) -> score for one date in one Spark app",
        _nightly,
    )
    back = add(
        "backfill",
        "every date of a range in one pass (or the nightly flow night by night), resumable",
        _backfill,
        run_date=False,
    )
    back.add_argument("--from", dest="date_from", type=_run_date, required=True, metavar="DATE")
    back.add_argument("--to", dest="date_to", type=_run_date, required=True, metavar="DATE")
    back.add_argument(
        "--night-by-night",
        action="store_true",
        help="run the nightly flow for each date in turn instead of the range in one pass "
        "(both leave the same tables; one pass pays the fixed costs once)",
    )
    add(
        "status",
        "what each stage did per date (the audit ledger), predictions per date, the champion",
        _status,
        run_date=False,
    )
    add(
        "maintain",
        "compact, checkpoint and vacuum the pipeline's Delta tables, keeping pinned versions",
        _maintain,
    )
    demo = add(
        "demo",
        "the main job on the embedded default: generate fraud data day by day and run every night",
        _demo,
        pipeline=False,
        run_date=False,
    )
    demo.add_argument("--days", type=int, default=5, help="nights to run (default 5)")
    demo.add_argument("--rows-per-day", type=int, default=200_000, metavar="N")
    demo.add_argument("--start-date", type=_run_date, default=dt.date(2026, 1, 1))
    demo.add_argument("--seed", type=int, default=7)
    init = add(
        "init",
        "draft conf/base/pipelines/NAME.yml from a sample of a data file (columns, types, label)",
        _init,
        pipeline=False,
        run_date=False,
    )
    init.add_argument("name", metavar="NAME", help="the new pipeline's name (an identifier)")
    init.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URI",
        help="a data file, or a folder of them (any Hadoop URI; local files are read directly)",
    )
    init.add_argument("--format", choices=["csv", "json", "parquet"], help="default: by extension")
    init.add_argument("--label", metavar="COLUMN", help="default: the last two-class column")
    init.add_argument(
        "--positive",
        action="append",
        metavar="VALUE",
        help="the label value that is class 1 (repeat for several; default: the rarer class)",
    )
    init.add_argument(
        "--test", metavar="GLOB", help="files that are the test set (e.g. 'adult.test')"
    )
    init.add_argument("--weight", metavar="COLUMN", help="a column of sample weights")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    add(
        "check",
        "check the stack: Delta round trip and an MLflow run (prints where they are)",
        _check,
        pipeline=False,
        run_date=False,
    )
    add(
        "config",
        "print the resolved configuration, secrets masked, with where each value came from",
        _config,
        run_date=False,
    )
    return parser, handlers


def _version() -> str:
    from pipeline import __version__

    return f"mlpipe {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, validate configuration (before Spark starts), run the command."""
    parser, handlers = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    verbose = bool(args.verbose) or os.environ.get("MLPIPE_DEBUG") == "1"
    if verbose:
        # Everything on the console, at DEBUG (`pipeline.console` sets up the quiet default).
        logging.basicConfig(level=logging.DEBUG, format=FILE_FORMAT)
    # Everything this process prints or logs from here on passes the redactor, which learns the
    # configuration's secrets as it is loaded.
    with installed():
        return _main(args, handlers, verbose)


def _main(args: argparse.Namespace, handlers: dict[str, Handler], verbose: bool) -> int:
    try:
        resolved = resolve_config(
            getattr(args, "pipeline", None),
            env=args.env,
            conf_dir=args.conf_dir,
            overrides=args.overrides,
        )
    except ConfigError as exc:
        print(f"mlpipe: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    preexisting = _active_spark() is not None  # e.g. a test's session: not ours to stop
    if getattr(args, "run_date", "absent") is None:
        args.run_date = default_run_date()
    logs = Path(resolved.config.storage.logs)
    with run_console(args.command, logs, show_all=verbose) as log_path:
        code = _run(args, handlers, resolved, verbose=verbose, preexisting=preexisting)
        if code != EXIT_OK and log_path is not None:
            print(f"mlpipe {args.command}: the run's log: {log_path}", file=sys.stderr)
        return code


def _run(
    args: argparse.Namespace,
    handlers: dict[str, Handler],
    resolved: Resolved,
    *,
    verbose: bool,
    preexisting: bool,
) -> int:
    try:
        if args.command in TRACKED_COMMANDS:
            # Every command that reads or writes MLflow talks to the configured tracking server and
            # registry, whichever stages run in it: MLflow's own default is ./mlflow.db in the
            # working directory.
            from pipeline.tracking import configure_mlflow

            configure_mlflow(resolved.config.mlflow)
        return handlers[args.command](Invocation(args, resolved.config, resolved))
    except ConfigError as exc:
        print(f"mlpipe: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineError as exc:
        if verbose:
            traceback.print_exc()
        trace.info("%s failed", args.command, exc_info=True)
        print(f"mlpipe {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mlpipe {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unexpected Spark/IO failure: still one clear line
        traceback.print_exc() if verbose else None
        # The traceback goes to the run's log file (not to the console) without -v.
        trace.info("%s failed", args.command, exc_info=True)
        print(
            f"mlpipe {args.command}: failed: {type(exc).__name__}: {_first_line(exc)}"
            " (run with -v for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    finally:
        if not preexisting:
            _stop_spark()


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return repr(exc)
    # py4j's first line names only the JVM call ("An error occurred while calling o81.save.");
    # the Java exception and its message follow on the next line.
    if lines[0].startswith("An error occurred while calling") and len(lines) > 1:
        return lines[1].removeprefix(": ")
    return lines[0]


def _active_spark() -> SparkSession | None:
    if "pyspark.sql" not in sys.modules:  # never import pyspark just to ask
        return None
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _stop_spark() -> None:
    active = _active_spark()
    if active is not None:
        active.stop()
