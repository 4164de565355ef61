"""The package's shape: no import circle (function-level imports included), modules that read in
one sitting, arrows that point down (the library never imports the CLI, presentation never imports
Spark), and one home for what every launcher shares. Read from the source, no Spark."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "pipeline"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    if not path.is_relative_to(ROOT):
        return path.stem
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The project module `name` refers to (a module, or the module holding the name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path) -> set[str]:
    """Every project module `path` imports, at any depth of the code (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
        for target in targets:
            if target.split(".")[0] != "pipeline":
                continue
            module = _resolve(target)
            if module is not None and module != _module_name(path):
                found.add(module)
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_circle_through_a_function_level_import(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from pipeline.cli import main\n")
    assert "pipeline.cli" in imports_of(a)
    assert _cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


def test_no_import_circle_in_the_package() -> None:
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_reads_in_one_sitting(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES})"


def test_the_library_never_imports_the_command_line() -> None:
    importers = sorted(m for m, deps in GRAPH.items() if "pipeline.cli" in deps)
    assert importers == ["pipeline.__main__"]


def test_presentation_imports_neither_spark_nor_mlflow_nor_training() -> None:
    for name, path in MODULES.items():
        if not name.startswith("pipeline.report"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = [node.module]
            else:
                continue
            for root in roots:
                assert not root.startswith(("pyspark", "mlflow", "pipeline.train")), (name, root)


def test_modelling_never_imports_presentation() -> None:
    for name, deps in GRAPH.items():
        if name.startswith("pipeline.model"):
            assert not any(d.startswith("pipeline.report") for d in deps), name


def test_delta_settings_have_one_home() -> None:
    homes = [
        str(p.relative_to(ROOT))
        for folder in ("pipeline", "scripts", "deploy", "jobs")
        for p in (ROOT / folder).rglob("*.py")
        if "DeltaSparkSessionExtension" in p.read_text(encoding="utf-8")
    ]
    assert homes == ["pipeline/sparkconf.py"]


def test_delta_conflicts_are_caught_by_type_not_message() -> None:
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        assert '"ConcurrentAppend"' not in text, name
        assert "DELTA_CONCURRENT" not in text, name
