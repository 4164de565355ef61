"""Helpers shared by the tests (one copy, imported)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def local_path(uri: str) -> str:
    """The local path of a file:// URI (for readers that take paths)."""
    return uri[len("file://") :] if uri.startswith("file://") else uri
