"""Where each table of a pipeline lives: `tables:` in its spec, else <storage.tables>/<pipeline>/..."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.config.models import AppConfig


def join_uri(base: str, *parts: str) -> str:
    """Join URI segments with single slashes (works for file://, hdfs://, s3a://, ...)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


@dataclass(frozen=True)
class PipelinePaths:
    """Resolved locations of one pipeline's landing folders and tables."""

    pipeline: str
    landing: str
    bronze_root: str
    quarantine: str
    ingest_log: str
    audit: str
    features: str
    predictions: str
    lease: str
    sources: dict[str, str] = field(default_factory=dict)  # source name -> its landing folder

    def bronze(self, source: str) -> str:
        """The bronze table of one source."""
        return join_uri(self.bronze_root, source)

    @classmethod
    def of(cls, config: AppConfig) -> PipelinePaths:
        """Paths for the configured pipeline."""
        spec = config.require_pipeline()
        base = join_uri(config.storage.tables, spec.name)
        t = spec.tables
        return cls(
            pipeline=spec.name,
            landing=join_uri(config.storage.landing, spec.name),
            bronze_root=t.bronze or join_uri(base, "bronze"),
            quarantine=t.quarantine or join_uri(base, "quarantine"),
            ingest_log=t.ingest_log or join_uri(base, "ingest_log"),
            audit=t.audit or join_uri(base, "audit"),
            features=t.features or join_uri(base, "features"),
            predictions=t.predictions or join_uri(base, "predictions"),
            # Beside the tables whatever `tables:` says: every writer of this pipeline finds it.
            lease=join_uri(base, "_lease"),
            sources={
                name: source.path or join_uri(config.storage.landing, spec.name, name)
                for name, source in spec.sources.items()
            },
        )

    def source_path(self, source: str) -> str:
        """Landing folder of one source: its `path`, else <landing>/<pipeline>/<source>."""
        return self.sources[source]
