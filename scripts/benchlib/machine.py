"""What the benchmark ran on: CPU, memory, versions, and whether a native BLAS is available."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram_gib() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def java_version() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        return "not found"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    lines = (out.stderr or out.stdout).strip().splitlines()
    return " / ".join(lines[:2]) if lines else "unknown"


def native_blas() -> str:
    """`ldconfig -p | grep libblas.so.3`, with the library the link resolves to."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (ldconfig failed)"
    found = [line.strip() for line in out.splitlines() if "libblas.so.3" in line]
    if not found:
        return "no libblas.so.3 (MLlib falls back to its JVM BLAS)"
    path = found[0].split("=>")[-1].strip()
    return f"{found[0]} → {os.path.realpath(path)}"


def package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def java_processes() -> int:
    """How many `java` processes run on the machine now (others' test suites add noise)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "java":
                    count += 1
            except OSError:
                continue
    return count


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    load = _read("/proc/loadavg").split()
    return " ".join(load[:3]) if load else "unknown"


def machine_info(
    *, jvm_blas: str | None = None, spark_version: str | None = None, load: str = ""
) -> dict[str, str]:
    """The rows of the report's machine table."""
    blas = jvm_blas or "unknown"
    if "JNIBLAS" in blas:
        blas += " (native BLAS loaded)"
    elif blas != "unknown":
        blas += " (no native BLAS: pure-JVM BLAS)"
    return {
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "RAM": ram_gib(),
        "OS": platform.platform(),
        "Python": sys.version.split()[0],
        "Java": java_version(),
        "Spark": spark_version or package("pyspark"),
        "Delta Lake (delta-spark)": package("delta-spark"),
        "MLflow": package("mlflow"),
        "scikit-learn / numpy / pandas": " / ".join(
            package(p) for p in ("scikit-learn", "numpy", "pandas")
        ),
        "native BLAS (ldconfig -p)": native_blas(),
        "MLlib BLAS in the JVM": blas,
        "load average at start": load or load_average(),
    }
