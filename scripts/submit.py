"""Build and run the spark-submit command for one pipeline stage (`scripts/submit` runs this).

    scripts/submit [--master URL] [--deploy-mode client|cluster] [options] STAGE [-- MLPIPE_ARGS...]
    scripts/submit --master spark://127.0.0.1:7077 check -- --env cluster
    scripts/submit --dry-run ingest -- --pipeline fraud --run-date 2026-01-01

What the command carries:

* the `pipeline` package as a zip in `.cache/dist/` (`--py-files`), rebuilt only when a source file
  changed (the name holds a hash of the sources, so a running application keeps its own copy). A zip,
  not a wheel: the package is pure Python, `--py-files` documents `.zip`, and building it needs no
  build backend;
* the Delta jars cached by `scripts/setup.sh` in `.cache/jars/delta` (`--jars`) and Delta's two
  settings (SQL extension and catalog);
* `spark.pyspark.python` (and the driver's) set to this virtualenv's Python: on this machine the
  executors share it (on other clusters, ship a packed environment: docs/CLUSTER.md);
* the configuration. In client mode (the default) the driver runs here and reads `conf/` in place
  through `MLPIPE_CONF_DIR`: no copy to go stale, and the executors never read configuration (the
  driver resolves it and passes values in closures). In cluster mode (YARN, Kubernetes) `conf/` is
  zipped and shipped with `--archives conf.zip#conf`, and the driver's `MLPIPE_CONF_DIR` is `conf`;
* on a loopback master (local or spark://127.0.0.1) the driver binds 127.0.0.1.

`--dry-run` prints the command (the zip is still built, so the printed command runs as it is).
The exit code is spark-submit's (the job's: 0 success, 1 run failure, 2 usage/configuration error);
errors of this helper exit 2.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shlex
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.redact import SPARK_REDACTION_REGEX
from pipeline.sparkconf import DELTA_CONF

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pipeline"
DIST_DIR = ROOT / ".cache" / "dist"
JARS_DIR = ROOT / ".cache" / "jars" / "delta"
JOBS_DIR = ROOT / "jobs"
CONF_DIR = ROOT / "conf"
LOOPBACK = "127.0.0.1"
RESOURCE_OPTIONS = (
    "driver_memory",
    "executor_memory",
    "executor_cores",
    "total_executor_cores",
    "num_executors",
)
PACKAGE_SUFFIXES = (".py", ".typed", ".j2", ".css")
KEEP_BUILDS = 3  # older package zips are pruned beyond this many
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same bytes


class SubmitError(Exception):
    """A problem this helper reports in one line before anything runs (exit 2)."""


@dataclass(frozen=True)
class Submission:
    """A spark-submit command: its options, the job script and the job's own arguments."""

    spark_submit: str
    options: list[tuple[str, str]]
    job: str
    job_args: list[str]
    env: dict[str, str] = field(default_factory=dict)  # only the variables this helper sets

    @property
    def argv(self) -> list[str]:
        """The command line."""
        flat = [part for option in self.options for part in option]
        return [self.spark_submit, *flat, self.job, *self.job_args]

    def render(self) -> str:
        """The command as a copy-pasteable shell command, one option per line."""
        env = [f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        lines = [" ".join([*env, shlex.quote(self.spark_submit)])]
        lines += [f"  {name} {shlex.quote(value)}" for name, value in self.options]
        lines.append("  " + shlex.join([self.job, *self.job_args]))
        return " \\\n".join(lines)


def stages() -> list[str]:
    """The stages that have a spark-submit entry point: `jobs/<stage>.py`."""
    return sorted(p.stem for p in JOBS_DIR.glob("*.py") if not p.stem.startswith("_"))


def package_sources(root: Path = ROOT) -> list[Path]:
    """The files of the `pipeline` package that go into the zip: sources, `py.typed`, and the
    report's template and style sheet (package data read at run time)."""
    pkg = root / PACKAGE
    files = [
        p
        for p in pkg.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in PACKAGE_SUFFIXES
    ]
    return sorted(files)


def sources_hash(files: Iterable[Path], root: Path = ROOT) -> str:
    """A hash of the files' relative paths and contents."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _write_zip(target: Path, files: Sequence[Path], base: Path, prefix: str = "") -> None:
    """Write `files` (paths relative to `base`, under `prefix`) into `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                info = zipfile.ZipInfo(prefix + str(path.relative_to(base)), date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _prune(pattern: str, keep: Path) -> None:
    """Delete older builds matching `pattern` in DIST_DIR, keeping `keep` and the newest others."""
    others = sorted(
        (p for p in DIST_DIR.glob(pattern) if p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[KEEP_BUILDS - 1 :]:
        old.unlink(missing_ok=True)


def build_package() -> Path:
    """The zip of the `pipeline` package in .cache/dist, built only if its sources changed."""
    files = package_sources()
    if not any(p.name == "__init__.py" and p.parent.name == PACKAGE for p in files):
        raise SubmitError(f"no Python package at {ROOT / PACKAGE}")
    target = DIST_DIR / f"{PACKAGE}-{sources_hash(files)}.zip"
    if not target.exists():
        _write_zip(target, files, ROOT)
        _prune(f"{PACKAGE}-*.zip", target)
    else:
        target.touch()  # most recently used: the last to be pruned
    return target


def build_conf_archive(conf_dir: Path) -> Path:
    """A zip of the configuration folder (its contents at the root), for `--archives conf.zip#conf`."""
    files = sorted(p for p in conf_dir.rglob("*") if p.is_file())
    if not files:
        raise SubmitError(f"no configuration files in {conf_dir}")
    target = DIST_DIR / f"conf-{sources_hash(files, conf_dir)}.zip"
    if not target.exists():
        _write_zip(target, files, conf_dir)
        _prune("conf-*.zip", target)
    return target


def delta_jars(jars_dir: Path = JARS_DIR) -> list[Path]:
    """The Delta jars cached by scripts/setup.sh."""
    jars = sorted(jars_dir.glob("*.jar"))
    if not any(j.name.startswith("delta-spark_") for j in jars):
        raise SubmitError(f"Delta jars not found in {jars_dir}; run: bash scripts/setup.sh")
    return jars


def spark_home() -> Path:
    """The pyspark package folder, which is a Spark home with bin/spark-submit."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SubmitError(
            f"pyspark is not installed for {sys.executable}; run: bash scripts/setup.sh"
        )
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-submit").exists():
        raise SubmitError(f"{home / 'bin' / 'spark-submit'} not found")
    return home


def is_loopback_master(master: str) -> bool:
    """A master on this machine: local mode, or a standalone master on a loopback address."""
    if master.startswith("local"):
        return True
    if master.startswith("spark://"):
        hosts = [h.rsplit(":", 1)[0] for h in master[len("spark://") :].split(",")]
        return all(h in ("localhost", "::1") or h.startswith("127.") for h in hosts)
    return False


def cluster_manager(master: str) -> str:
    """local, standalone, yarn or k8s."""
    if master.startswith("local"):
        return "local"
    if master.startswith("spark://"):
        return "standalone"
    if master == "yarn":
        return "yarn"
    if master.startswith("k8s://"):
        return "k8s"
    raise SubmitError(
        f"unsupported master '{master}' (local[N], spark://HOST:PORT, yarn, k8s://URL)"
    )


def _conf_dir_from(job_args: Sequence[str]) -> Path | None:
    for i, arg in enumerate(job_args):
        if arg == "--conf-dir" and i + 1 < len(job_args):
            return Path(job_args[i + 1])
        if arg.startswith("--conf-dir="):
            return Path(arg.split("=", 1)[1])
    return None


def build_submission(args: argparse.Namespace, job_args: Sequence[str]) -> Submission:
    """The spark-submit command for `args.stage` with the job's arguments."""
    master: str = args.master
    deploy_mode: str = args.deploy_mode
    manager = cluster_manager(master)
    if deploy_mode == "cluster" and manager in ("local", "standalone"):
        raise SubmitError(
            f"--deploy-mode cluster is not available for Python applications on a {manager} "
            "master; use client mode (the default)"
        )
    job = JOBS_DIR / f"{args.stage}.py"
    if not job.exists():
        raise SubmitError(f"no entry point {job}")

    python: str = args.python
    driver_python: str = args.driver_python
    if is_loopback_master(master) and not Path(python).exists():
        raise SubmitError(f"Python {python} not found; run: bash scripts/setup.sh")
    if deploy_mode == "client" and not Path(driver_python).exists():
        raise SubmitError(f"driver Python {driver_python} not found; run: bash scripts/setup.sh")
    home = spark_home()
    env: dict[str, str] = {"SPARK_HOME": str(home)}
    conf: dict[str, str] = {
        **DELTA_CONF,
        "spark.redaction.regex": SPARK_REDACTION_REGEX,
        "spark.pyspark.python": python,
        "spark.log.level": "WARN",  # the driver's log from SparkContext start on (was INFO)
    }
    options: list[tuple[str, str]] = [
        ("--master", master),
        ("--deploy-mode", deploy_mode),
        ("--jars", ",".join(str(j) for j in delta_jars())),
        ("--py-files", str(build_package())),
    ]
    archives: list[str] = list(args.archives)
    conf_dir = _conf_dir_from(job_args)
    if deploy_mode == "client":
        conf["spark.pyspark.driver.python"] = driver_python
        if conf_dir is None:
            env["MLPIPE_CONF_DIR"] = os.environ.get("MLPIPE_CONF_DIR") or str(CONF_DIR)
    else:
        if conf_dir is not None:
            raise SubmitError("--conf-dir names a local folder; in cluster mode conf/ is shipped")
        archive = build_conf_archive(Path(os.environ.get("MLPIPE_CONF_DIR") or CONF_DIR))
        archives.append(f"{archive}#conf")
        env_key = (
            "spark.yarn.appMasterEnv.MLPIPE_CONF_DIR"
            if manager == "yarn"
            else "spark.kubernetes.driverEnv.MLPIPE_CONF_DIR"
        )
        conf[env_key] = "conf"
    if archives:
        options.append(("--archives", ",".join(archives)))
    if is_loopback_master(master):
        conf["spark.driver.host"] = LOOPBACK
        conf["spark.driver.bindAddress"] = LOOPBACK
        env["SPARK_LOCAL_IP"] = LOOPBACK
        # One machine: Spark's 200 shuffle partitions (and Delta's 50 for log replay) are far too
        # many; twice its cores, as when mlpipe starts Spark itself. --conf overrides these.
        parts = str(2 * (os.cpu_count() or 2))
        conf["spark.sql.shuffle.partitions"] = parts
        conf["spark.databricks.delta.snapshotPartitions"] = parts
    for opt in RESOURCE_OPTIONS:
        value = getattr(args, opt)
        if value is not None:
            options.append(("--" + opt.replace("_", "-"), str(value)))
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("spark."):
            raise SubmitError(f"--conf expects spark.KEY=VALUE, not '{item}'")
        conf[key] = value
    options += [("--conf", f"{key}={value}") for key, value in conf.items()]
    return Submission(
        spark_submit=str(home / "bin" / "spark-submit"),
        options=options,
        job=str(job),
        job_args=list(job_args),
        env=env,
    )


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """This helper's options and the stage; the arguments after `--` go to the job unchanged."""
    if "--" in argv:
        cut = list(argv).index("--")
        own, job_args = list(argv[:cut]), list(argv[cut + 1 :])
    else:
        own, job_args = list(argv), []
    venv = Path(os.environ.get("MLPIPE_VENV") or ROOT / ".venv")
    parser = argparse.ArgumentParser(
        prog="scripts/submit",
        description="Run a pipeline stage with spark-submit: jobs/STAGE.py with the package, the "
        "Delta jars and settings, this venv's Python and the configuration.",
        epilog="Example: scripts/submit --master spark://127.0.0.1:7077 check -- --env cluster",
    )
    parser.add_argument("stage", metavar="STAGE", choices=stages(), help=", ".join(stages()))
    parser.add_argument(
        "--master",
        default=os.environ.get("SPARK_MASTER") or f"spark://{LOOPBACK}:7077",
        help="spark://HOST:PORT, yarn, k8s://URL or local[N] (default: $SPARK_MASTER or "
        "spark://127.0.0.1:7077)",
    )
    parser.add_argument("--deploy-mode", choices=("client", "cluster"), default="client")
    parser.add_argument(
        "--python",
        default=str(venv / "bin" / "python"),
        help="Python of the executors (and of the driver in cluster mode); default: the "
        "project's .venv; with a shipped environment: ./env/bin/python",
    )
    parser.add_argument(
        "--driver-python",
        default=str(venv / "bin" / "python"),
        help="Python of the driver in client mode (default: the project's .venv)",
    )
    parser.add_argument(
        "--archives",
        action="append",
        default=[],
        metavar="FILE#NAME",
        help="an archive to unpack in each container, e.g. env.tar.gz#env (repeatable)",
    )
    parser.add_argument("--driver-memory", metavar="MEM")
    parser.add_argument("--executor-memory", metavar="MEM")
    parser.add_argument("--executor-cores", type=int, metavar="N")
    parser.add_argument("--total-executor-cores", type=int, metavar="N", help="standalone, k8s")
    parser.add_argument("--num-executors", type=int, metavar="N", help="YARN, k8s")
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="any Spark setting"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    args, unknown = parser.parse_known_args(own)
    if unknown:
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)} (the job's own arguments go after '--')"
        )
    return args, job_args


def main(argv: Sequence[str] | None = None) -> int:
    args, job_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        submission = build_submission(args, job_args)
    except SubmitError as exc:
        print(f"submit: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(submission.render())
        return 0
    sys.stdout.flush()
    os.execve(submission.spark_submit, submission.argv, {**os.environ, **submission.env})


if __name__ == "__main__":
    sys.exit(main())
