"""Logged models ship this package even when it is imported from a spark-submit --py-files zip."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import ROOT


def test_package_dir_is_a_real_folder_when_imported_from_a_zip(tmp_path: Path) -> None:
    archive = tmp_path / "pipeline.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (ROOT / "pipeline").rglob("*.py"):
            zf.write(path, path.relative_to(ROOT).as_posix())
    code = (
        "import pipeline; from pipeline.model.registry import package_dir; d = package_dir(); "
        "print(pipeline.__file__); print(d); print((d / 'cli.py').read_text() == open(sys.argv[1]).read())"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import sys; " + code, str(ROOT / "pipeline" / "cli.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(archive)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported_from, folder, same = result.stdout.split()
    assert imported_from.startswith(str(archive))
    assert Path(folder).is_dir()
    assert Path(folder).name == "pipeline"
    assert same == "True"
