"""`make bench` (third part): beyond one process's memory. One logistic-regression pipeline
(imputation, scaling, one-hot encoding and the model; no cross-validation), fitted with ours and
with scikit-learn on the same growing data, each under the same memory cap for its whole process
tree, until a tool fails.

    .venv/bin/python scripts/bench_scale.py                         # 4M, 8M, 16M rows, 12 GiB cap
    .venv/bin/python scripts/bench_scale.py --sizes 200000,400000 --cap-gib 2   # a quick look

For each size, one Spark process generates the rows (the benchmark's training table: 20 numeric
features with nulls, 2 categorical ones, a binary label; 80% train, 20% test) as Parquet. Each tool
then runs in a fresh process inside a memory cgroup whose limit is the cap, so the tool that
exceeds it is stopped by the kernel, never the machine. Where no cgroup can be made, a watchdog
sums the process tree's resident memory every 0.1 s and kills the tree past the cap. A tool that
fails at one size is not run at the larger ones. Reported per tool and size: wall time, rows/s,
the peak resident memory of the whole tree and of our driver's JVM, test AUC, or how it failed.
The result goes to BENCHMARKS_SCALE.md (and stdout).

The data is the same for both tools: scikit-learn reads the Parquet files into pandas, ours reads
them with Spark. Ours runs in local mode with the `test` environment's driver memory (3g): the
driver holds no rows, so its peak stays flat as the rows grow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent))

from benchlib.common import CATEGORICAL, KEY, LR_MAX_ITER, NUMERIC, ROOT  # noqa: E402
from benchlib.procmem import descendants, process_table, status_kb  # noqa: E402

TOOLS = ("ours", "sklearn")
REG_PARAM = 0.001
TEST_FRACTION = 0.2
SPLIT = "_split"
CGROUP_V1 = Path("/sys/fs/cgroup/memory")
CGROUP_V2 = Path("/sys/fs/cgroup")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--sizes",
        default="4000000,8000000,16000000",
        help="comma-separated row counts, in growing order (default 4M,8M,16M)",
    )
    p.add_argument("--cap-gib", type=float, default=12.0, help="memory cap per tool (GiB)")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma-separated: ours,sklearn")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per tool and size")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS_SCALE.md")
    p.add_argument("--work", type=Path, default=None, help="work directory (default: a temp dir)")
    # Internal: one step in a fresh process.
    p.add_argument("--generate", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--one", choices=TOOLS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes: '{args.sizes}' is not a comma-separated list of row counts")
    args.tools = [t for t in args.tools.split(",") if t.strip()]
    if unknown := [t for t in args.tools if t not in TOOLS]:
        p.error(f"--tools: unknown {', '.join(unknown)} (known: {', '.join(TOOLS)})")
    return args


# ------------------------------------------------------------------------------------------------
# The steps, each in its own process
# ------------------------------------------------------------------------------------------------


def _config(work: Path) -> Any:
    from benchlib.common import bench_config

    return bench_config(work / "conf-scratch", kind="lr", features_table=work / "unused")


def generate(rows: int, data: Path, work: Path) -> dict[str, Any]:
    from benchlib.common import SEED, start_spark
    from benchlib.data import training_frame
    from pyspark.sql import functions as F

    spark = start_spark(_config(work), "scale-generate")
    try:
        frame = training_frame(spark, rows).withColumn(
            SPLIT, F.when(F.rand(SEED + 7) < TEST_FRACTION, "test").otherwise("train")
        )
        frame.select(KEY, *NUMERIC, *CATEGORICAL, "label", SPLIT).write.mode("overwrite").parquet(
            "file://" + str(data)
        )
    finally:
        spark.stop()
    return {"rows": rows}


def fit_ours(data: Path, work: Path) -> dict[str, Any]:
    from benchlib.common import start_spark
    from pyspark.sql import functions as F

    from pipeline.model.evaluate import binary_metrics
    from pipeline.train.search import GridResult
    from pipeline.train.supervised import SupervisedTask, fit_final

    config = _config(work)
    spark = start_spark(config, "scale-ours")
    try:
        started = time.monotonic()
        rows = spark.read.parquet("file://" + str(data))
        train, test = rows.where(F.col(SPLIT) == "train"), rows.where(F.col(SPLIT) == "test")
        task = SupervisedTask.of(config.require_pipeline())
        winner = GridResult(
            "logreg", "logistic_regression", 0, {"maxIter": LR_MAX_ITER, "regParam": REG_PARAM}
        )
        model = fit_final(task, train, winner)
        fitted = time.monotonic()
        metrics, _ = binary_metrics(model.transform(test), 0.5)
        return {
            "fit_s": fitted - started,
            "test_auc": metrics["areaUnderROC"],
            "wall_s": time.monotonic() - started,
        }
    finally:
        spark.stop()


def fit_sklearn(data: Path) -> dict[str, Any]:
    import pandas as pd
    from benchlib.cases import _sklearn_preprocessing
    from benchlib.common import SEED
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline

    started = time.monotonic()
    df = pd.read_parquet(data)
    train, test = df[df[SPLIT] == "train"], df[df[SPLIT] == "test"]
    del df
    # MLlib's regParam r on n rows is scikit-learn's C = 1 / (r * n) (no penalty on the intercept).
    model = Pipeline(
        [
            ("pre", _sklearn_preprocessing(dense=False)),
            (
                "lr",
                LogisticRegression(
                    C=1.0 / (REG_PARAM * len(train)), max_iter=LR_MAX_ITER, random_state=SEED
                ),
            ),
        ]
    )
    model.fit(train[[*NUMERIC, *CATEGORICAL]], train["label"])
    fitted = time.monotonic()
    scores = model.predict_proba(test[[*NUMERIC, *CATEGORICAL]])[:, 1]
    return {
        "fit_s": fitted - started,
        "test_auc": float(roc_auc_score(test["label"], scores)),
        "wall_s": time.monotonic() - started,
    }


# ------------------------------------------------------------------------------------------------
# The cap: a memory cgroup, or a watchdog
# ------------------------------------------------------------------------------------------------


class Cap:
    """A memory limit on a process tree: a cgroup (v1 or v2) when one can be made, else a
    watchdog that kills the tree past the limit. Samples the tree's resident memory too."""

    def __init__(self, limit_bytes: int, name: str) -> None:
        self.limit = limit_bytes
        self.group: Path | None = None
        self.kind = "watchdog"
        for parent, limit_file in ((CGROUP_V1, "memory.limit_in_bytes"), (CGROUP_V2, "memory.max")):
            group = parent / f"mlpipe-bench-{name}-{os.getpid()}"
            try:
                if not (parent / "cgroup.procs").exists():
                    continue
                if parent == CGROUP_V2 and not (parent / "cgroup.subtree_control").exists():
                    continue
                group.mkdir()
                (group / limit_file).write_text(str(limit_bytes))
                if parent == CGROUP_V1:
                    # No swap either, where the kernel accounts it: the cap is real memory.
                    swap = group / "memory.memsw.limit_in_bytes"
                    if swap.exists():
                        swap.write_text(str(limit_bytes))
                self.group, self.kind = group, f"cgroup {'v1' if parent == CGROUP_V1 else 'v2'}"
                break
            except OSError:
                if group.exists():
                    group.rmdir()
        self.peak_rss = 0
        self.peak_jvm = 0
        self.killed_by_watchdog = False

    def preexec(self) -> None:
        """In the child before exec: join the cgroup (children inherit it)."""
        if self.group is not None:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        """Whether the kernel (or the watchdog) killed a process of the tree at the cap."""
        if self.group is None:
            return self.killed_by_watchdog
        # v1: memory.oom_control, v2: memory.events; both count "oom_kill N" (kernel 4.13+).
        for name in ("memory.oom_control", "memory.events"):
            path = self.group / name
            if path.exists():
                for line in path.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value) > 0
        return False

    def watch(self, root: int, stop: threading.Event) -> None:
        while not stop.is_set():
            table = process_table()
            total = 0
            for pid in [root, *descendants(root, table)]:
                rss = status_kb(pid, "VmRSS")
                if rss is None:
                    continue
                total += rss * 1024
                if table.get(pid, ("", 0))[0] == "java":
                    self.peak_jvm = max(self.peak_jvm, rss * 1024)
            self.peak_rss = max(self.peak_rss, total)
            if self.group is None and total > self.limit:
                self.killed_by_watchdog = True
                os.killpg(root, signal.SIGKILL)
                return
            stop.wait(0.1)

    def close(self) -> None:
        if self.group is not None:
            for _ in range(50):
                try:
                    self.group.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


@dataclass
class Result:
    tool: str
    rows: int
    ok: bool
    wall_s: float | None = None
    test_auc: float | None = None
    peak_gib: float = 0.0
    jvm_gib: float = 0.0
    failure: str = ""


def run_capped(
    argv: list[str], cap_bytes: int, name: str, timeout: float, log: Path
) -> tuple[int, Cap, float]:
    cap = Cap(cap_bytes, name)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=cap.preexec,
        )
        stop = threading.Event()
        watcher = threading.Thread(target=cap.watch, args=(proc.pid, stop), daemon=True)
        watcher.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        finally:
            stop.set()
            watcher.join()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the tool left behind
    wall = time.monotonic() - started
    cap.close()
    return code, cap, wall


def last_json(log: Path) -> dict[str, Any] | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{") and line.endswith("}"):
            try:
                return dict(json.loads(line))
            except ValueError:
                continue
    return None


def measure(tool: str, rows: int, data: Path, work: Path, args: argparse.Namespace) -> Result:
    cap_bytes = int(args.cap_gib * 1024**3)
    log = work / f"{tool}-{rows}.log"
    argv = [sys.executable, str(SCRIPT), "--one", tool, "--data", str(data), "--work", str(work)]
    code, cap, wall = run_capped(argv, cap_bytes, tool, args.timeout, log)
    out = last_json(log)
    result = Result(tool, rows, code == 0 and out is not None)
    result.peak_gib, result.jvm_gib = cap.peak_rss / 1024**3, cap.peak_jvm / 1024**3
    if result.ok and out is not None:
        result.wall_s, result.test_auc = float(out["wall_s"]), float(out["test_auc"])
    elif cap.oom_killed() or code in (-9, 137):
        result.failure = f"stopped at the {args.cap_gib:g} GiB cap ({cap.kind})"
    elif wall >= args.timeout:
        result.failure = f"over the {args.timeout:.0f} s timeout"
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        result.failure = f"exit {code}: {tail[0][:160]}"
    return result


def render(results: list[Result], args: argparse.Namespace, kind: str) -> str:
    lines = [
        "# Beyond one process's memory",
        "",
        "`scripts/bench_scale.py` (run by `make bench`): one logistic-regression pipeline "
        "(median imputation, standard scaling, one-hot encoding, the model; no cross-validation; "
        f"regParam {REG_PARAM}, {LR_MAX_ITER} iterations) fitted by each tool in a fresh process "
        f"on the same Parquet rows, under a {args.cap_gib:g} GiB memory cap for its whole "
        f"process tree ({kind}). A tool that fails is not run at larger sizes. Time includes "
        "reading the rows and the process start; peak memory is the tree's resident memory, "
        "sampled every 0.1 s.",
        "",
        "| tool | rows | wall s | rows/s | peak GiB (tree) | JVM peak GiB | test AUC | outcome |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rate = f"{r.rows / r.wall_s:,.0f}" if r.ok and r.wall_s else "—"
        wall = f"{r.wall_s:.1f}" if r.wall_s else "—"
        auc = f"{r.test_auc:.4f}" if r.test_auc is not None else "—"
        jvm = f"{r.jvm_gib:.2f}" if r.jvm_gib else "—"
        outcome = "fitted" if r.ok else r.failure
        lines.append(
            f"| {r.tool} | {r.rows:,} | {wall} | {rate} | {r.peak_gib:.2f} | {jvm} | {auc} | "
            f"{outcome} |"
        )
    lines += ["", summary(results, args), ""]
    return "\n".join(lines)


def summary(results: list[Result], args: argparse.Namespace) -> str:
    def largest(tool: str) -> int | None:
        fitted = [r.rows for r in results if r.tool == tool and r.ok]
        return max(fitted) if fitted else None

    parts = []
    for tool, label in (("ours", "ours"), ("sklearn", "scikit-learn")):
        top = largest(tool)
        failed = [r for r in results if r.tool == tool and not r.ok]
        if top is None and not failed:
            continue
        text = f"{label} fitted up to {top:,} rows" if top else f"{label} fitted no size"
        if failed:
            text += f" and failed at {failed[0].rows:,} ({failed[0].failure})"
        parts.append(text)
    jvm = [r.jvm_gib for r in results if r.tool == "ours" and r.ok and r.jvm_gib]
    if len(jvm) > 1:
        parts.append(f"our driver JVM peaked at {min(jvm):.2f}–{max(jvm):.2f} GiB across sizes")
    return f"Under a {args.cap_gib:g} GiB cap: " + "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.generate is not None or args.one is not None:
        assert args.data is not None
        assert args.work is not None
        if args.generate is not None:
            out = generate(args.generate, args.data, args.work)
        elif args.one == "ours":
            out = fit_ours(args.data, args.work)
        else:
            out = fit_sklearn(args.data)
        print(json.dumps(out), flush=True)
        return 0

    work = args.work or Path(tempfile.mkdtemp(prefix="mlpipe-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    failed: set[str] = set()
    kind = Cap(1, "probe")
    kind.close()
    try:
        for rows in args.sizes:
            tools = [t for t in args.tools if t not in failed]
            if not tools:
                break
            data = work / f"rows-{rows}"
            print(f"generating {rows:,} rows ...", flush=True)
            gen = [sys.executable, str(SCRIPT), "--generate", str(rows), "--data", str(data)]
            gen += ["--work", str(work)]
            with (work / f"generate-{rows}.log").open("w") as log:
                subprocess.run(gen, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
            for tool in tools:
                print(f"  {tool} on {rows:,} rows ...", flush=True)
                result = measure(tool, rows, data, work, args)
                results.append(result)
                print(
                    f"    {'fitted' if result.ok else result.failure}: "
                    f"{result.wall_s or 0:.1f} s, peak {result.peak_gib:.2f} GiB, "
                    f"AUC {result.test_auc or 0:.4f}",
                    flush=True,
                )
                if not result.ok:
                    failed.add(tool)
            shutil.rmtree(data, ignore_errors=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report = render(results, args, kind.kind)
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
