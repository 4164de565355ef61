"""Peak memory of a process tree, sampled from /proc (Linux).

The measurement's Python process and its driver JVM (the `java` child PySpark launches) are read
through `VmHWM`, the kernel's own high-water mark of the process's resident set, so their peaks
are exact up to the last sample before exit. Every other descendant (Python workers, joblib
workers, JVMs started inside workers) is summed from its proportional set size (`Pss` in
`smaps_rollup`) at each sample; a JVM's short-lived forks (before they exec a shell command) are
skipped, since they only show the JVM's own pages.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Peaks:
    """Peak memory in MB (None: no such process was seen)."""

    python_mb: float | None
    jvm_mb: float | None
    workers_mb: float | None
    pids_seen: frozenset[int]


def process_table() -> dict[int, tuple[str, int]]:
    """pid -> (command name, parent pid) for every process visible now."""
    table: dict[int, tuple[str, int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        left, _, right = raw.rpartition(")")
        comm = left.partition("(")[2]
        fields = right.split()
        if len(fields) >= 2:
            table[int(entry.name)] = (comm, int(fields[1]))
    return table


def descendants(root: int, table: dict[int, tuple[str, int]]) -> list[int]:
    """Every descendant of `root` in `table` (not `root` itself)."""
    children: dict[int, list[int]] = {}
    for pid, (_, ppid) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def status_kb(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), None when the process is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def pss_kb(pid: int) -> int | None:
    """Proportional set size: resident memory with shared pages split among their sharers, so the
    forked Python workers that share their daemon's pages are not counted twice."""
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return status_kb(pid, "VmRSS")
    return status_kb(pid, "VmRSS")


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None


def is_jvm_fork(pid: int, ppid: int, table: dict[int, tuple[str, int]]) -> bool:
    """A JVM's child that has not exec'd yet (Hadoop's shell commands: `chmod`, `rm`, ...): it
    shows the JVM's own pages for an instant and is not a worker."""
    parent = table.get(ppid)
    return parent is not None and parent[0] == "java" and _exe(pid) == _exe(ppid)


def _top_level(pid: int, root: int, table: dict[int, tuple[str, int]]) -> int | None:
    """The ancestor of `pid` that is a direct child of `root` (`pid` itself if it is one)."""
    current = pid
    while current in table:
        parent = table[current][1]
        if parent == root:
            return current
        current = parent
    return None


def pid_alive(pid: int) -> bool:
    return (PROC / str(pid)).exists()


class TreeSampler:
    """Sample the memory of `root` and its descendants every `interval` seconds in a thread."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mem-{root}", daemon=True)
        self._python_kb = 0
        self._jvm_kb = 0
        self._workers_kb = 0
        self._saw_jvm = False
        self._saw_workers = False
        self._seen: set[int] = set()

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        """One sample (also called once more when stopping)."""
        table = process_table()
        py = status_kb(self.root, "VmHWM")
        if py is not None:
            self._python_kb = max(self._python_kb, py)
        workers = 0
        for pid in descendants(self.root, table):
            self._seen.add(pid)
            comm, ppid = table[pid]
            top = _top_level(pid, self.root, table)
            if top is None or not (table[top][0] == "java" or table[top][0].startswith("python")):
                # Under a launcher script (spark-submit's bash) that has not exec'd the JVM yet.
                continue
            if comm == "java" and ppid == self.root:
                hwm = status_kb(pid, "VmHWM")
                if hwm is not None:
                    self._saw_jvm = True
                    self._jvm_kb = max(self._jvm_kb, hwm)
            elif not is_jvm_fork(pid, ppid, table):
                pss = pss_kb(pid)
                if pss is not None:
                    self._saw_workers = True
                    workers += pss
        self._workers_kb = max(self._workers_kb, workers)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> Peaks:
        self._stop.set()
        self._thread.join()
        return Peaks(
            python_mb=self._python_kb / 1024 if self._python_kb else None,
            jvm_mb=self._jvm_kb / 1024 if self._saw_jvm else None,
            workers_mb=self._workers_kb / 1024 if self._saw_workers else None,
            pids_seen=frozenset(self._seen),
        )


def wait_gone(pids: frozenset[int], timeout: float = 60.0) -> bool:
    """Wait until none of `pids` exists (a finished child's JVM and workers); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


def own_hwm_mb() -> float | None:
    """This process's own peak resident memory in MB."""
    kb = status_kb(os.getpid(), "VmHWM")
    return None if kb is None else kb / 1024
