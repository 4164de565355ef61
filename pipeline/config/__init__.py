"""Layered, typed configuration (see `loader` for the file layout)."""

from __future__ import annotations

from pipeline.config.loader import default_conf_dir, list_pipelines, load_config
from pipeline.config.models import AppConfig, PipelineSpec

__all__ = ["AppConfig", "PipelineSpec", "default_conf_dir", "list_pipelines", "load_config"]
