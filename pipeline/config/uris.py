"""Storage locations: Hadoop FileSystem URIs, and local paths resolved against the project."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

# Hadoop FileSystem schemes the pipeline supports; s3:// and s3n:// are deliberately absent
# (Hadoop's S3 connector is s3a://).
URI_SCHEMES = ("file", "hdfs", "s3a", "abfs", "abfss", "wasb", "wasbs", "gs", "viewfs", "dbfs")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


def project_dir(info: ValidationInfo) -> Path:
    """The project folder: the parent of the configuration directory (else the cwd)."""
    ctx = info.context or {}
    conf_dir = ctx.get("conf_dir")
    return Path(conf_dir).resolve().parent if conf_dir is not None else Path.cwd()


def normalize_uri(value: str, project_dir: Path) -> str:
    """Return a Hadoop URI: absolute `file://` for local paths, unchanged for supported schemes."""
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    match = _SCHEME.match(value)
    if match is None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value) and not value.startswith("/"):
            raise ValueError(f"'{value}' is not a valid URI or path")
        path = Path(value)
        if not path.is_absolute():
            path = project_dir / path
        return "file://" + str(path.resolve())
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in ("s3", "s3n"):
        raise ValueError(f"scheme '{scheme}://' is not supported by Hadoop here; use s3a://")
    if scheme not in URI_SCHEMES:
        raise ValueError(
            f"unsupported URI scheme '{scheme}://' (supported: {', '.join(URI_SCHEMES)})"
        )
    if scheme != "file" and not rest.split("/", 1)[0]:
        raise ValueError(f"'{value}' names no host or bucket")
    if scheme == "file":
        return "file://" + str(Path("/" + rest.lstrip("/")))
    return f"{scheme}://{rest}".rstrip("/")


def _uri(value: str, info: ValidationInfo) -> str:
    return normalize_uri(value, project_dir(info))


Uri = Annotated[str, AfterValidator(_uri)]


def _local_path(value: str, info: ValidationInfo) -> str:
    uri = normalize_uri(value, project_dir(info))
    if not uri.startswith("file://"):
        raise ValueError("must be a local path (file://), not a remote URI")
    return uri[len("file://") :]


LocalPath = Annotated[str, AfterValidator(_local_path)]
