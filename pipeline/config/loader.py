"""Load layered YAML configuration: base, then an environment overlay, then `--set` overrides.

The merged document is validated into frozen pydantic models (`pipeline.config.models`). Every error
names the file that supplied the offending key and the dotted key path, and never echoes a value that
came from an environment variable (those are where secrets live).

Layout under the configuration directory (default: `conf/` of the project)::

    conf/base/project.yml              spark, storage, mlflow settings
    conf/base/pipelines/<name>.yml     one pipeline (use case) spec
    conf/<env>/project.yml             optional overlay for an environment (local, test, cluster, ...)
    conf/<env>/pipelines/<name>.yml    optional overlay for one pipeline in that environment

The pipeline spec is merged under the top-level key ``pipeline``, so ``--set pipeline.train.folds=5``
and ``--set spark.master=local[2]`` address one tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config.base import KeyedError
from pipeline.config.models import AppConfig
from pipeline.config.reader import KeyPath, read_yaml
from pipeline.errors import ConfigError
from pipeline.redact import REDACTOR, is_secret_name, uri_password

PROJECT_FILE = "project.yml"
PIPELINES_DIR = "pipelines"
SET_ORIGIN = "--set"
# ${VAR}, ${VAR:-default} (default when unset or empty) and ${VAR-default} (only when unset), as
# in a POSIX shell.
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*?))?\}")


def default_conf_dir() -> Path:
    """The configuration directory: $MLPIPE_CONF_DIR, else `conf/` beside the installed package."""
    env = os.environ.get("MLPIPE_CONF_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "conf"


@dataclass
class _Layered:
    """A merged document plus, for every key path, the file that last set it."""

    data: dict[str, Any] = field(default_factory=dict)
    origin: dict[KeyPath, str] = field(default_factory=dict)
    lines: dict[KeyPath, int] = field(default_factory=dict)  # (file's) line of each key
    env: dict[KeyPath, list[str]] = field(default_factory=dict)  # variables a value came from
    secrets: set[KeyPath] = field(default_factory=set)
    secret_values: set[str] = field(default_factory=set)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of `path` in the file that set it (or of its nearest enclosing key)."""
        parts = tuple(str(p) for p in path)
        for end in range(len(parts), 0, -1):
            if parts[:end] in self.lines:
                return self.lines[parts[:end]]
        return None

    def origin_of(self, path: Sequence[str | int]) -> str | None:
        """File that set `path`, or the nearest enclosing key that has one."""
        parts = tuple(str(p) for p in path)
        for end in range(len(parts), 0, -1):
            found = self.origin.get(parts[:end])
            if found is not None:
                return found
            # A section only its keys were recorded for (e.g. a missing key of `pipeline`): the
            # first file that set anything in it.
            prefix = parts[:end]
            found = next((f for k, f in self.origin.items() if k[:end] == prefix), None)
            if found is not None:
                return found
        return self.origin.get(())


def _interpolate(
    value: Any,
    path: KeyPath,
    file: str,
    layered: _Layered,
    lines: Mapping[KeyPath, int],
    env_here: dict[KeyPath, list[str]],
) -> Any:
    """Replace ${VAR}, ${VAR:-default} and ${VAR-default} in strings; remember which keys took
    a value from the environment (`lines`: the file's key lines, keyed like `path`)."""
    if isinstance(value, dict):
        return {
            k: _interpolate(v, (*path, str(k)), file, layered, lines, env_here)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate(v, (*path, str(i)), file, layered, lines, env_here)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, form, default = match.group(1), match.group(2), match.group(3)
        env_value = os.environ.get(name)
        used_default = env_value is None or (env_value == "" and form == ":-")
        env_here.setdefault(path, []).append(f"{name} (unset: default)" if used_default else name)
        if used_default:
            if form is None:
                raise ConfigError(
                    f"environment variable {name} is not set (use ${{{name}:-default}} "
                    "for an optional value)",
                    file=file,
                    key=".".join(path),
                    line=lines.get(path),
                )
            return default or ""
        layered.secrets.add(path)
        if env_value:
            layered.secret_values.add(env_value)
        return env_value or ""

    return _ENV_PATTERN.sub(substitute, value)


def _merge(
    layered: _Layered,
    overlay: Mapping[str, Any],
    file: str,
    prefix: KeyPath = (),
    lines: Mapping[KeyPath, int] | None = None,
) -> None:
    """Deep-merge `overlay` into `layered.data` at `prefix`: mappings merge, anything else replaces."""
    target: dict[str, Any] = layered.data
    for part in prefix:
        target = target.setdefault(part, {})
    for key, value in overlay.items():
        path = (*prefix, str(key))
        if not isinstance(key, str):
            raise ConfigError(
                f"keys must be strings, found {key!r}",
                file=file,
                key=".".join(path),
                line=(lines or {}).get(path),
            )
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            layered.origin.setdefault(path, file)
            if lines and path in lines:
                layered.lines.setdefault(path, lines[path])
            _merge(layered, value, file, path, lines)
            continue
        target[key] = value
        _record_origin(layered, path, value, file, lines)


def _record_origin(
    layered: _Layered,
    path: KeyPath,
    value: Any,
    file: str,
    lines: Mapping[KeyPath, int] | None = None,
) -> None:
    for stale in [p for p in layered.origin if p[: len(path)] == path]:
        del layered.origin[stale]
        layered.lines.pop(stale, None)
        layered.env.pop(stale, None)
    layered.origin[path] = file
    if lines and path in lines:
        layered.lines[path] = lines[path]
    if isinstance(value, dict):
        for k, v in value.items():
            _record_origin(layered, (*path, str(k)), v, file, lines)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _record_origin(layered, (*path, str(i)), v, file, lines)


def parse_overrides(overrides: Iterable[str]) -> list[tuple[KeyPath, Any]]:
    """Parse `a.b=c` strings; the value is read as YAML so numbers and booleans keep their type."""
    parsed: list[tuple[KeyPath, Any]] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects KEY.PATH=VALUE, got {item!r}", file=SET_ORIGIN)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"value is not valid YAML: {exc}", file=SET_ORIGIN, key=key) from exc
        parsed.append((tuple(key.split(".")), value))
    return parsed


def _apply_override(layered: _Layered, path: KeyPath, value: Any) -> None:
    """Set one key; a number addresses an item of a list (`train.candidates.0.params.maxIter`)."""
    target: Any = layered.data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise ConfigError(
                    f"'{part}' is not an item of this list (it has {len(target)} items: "
                    f"0..{len(target) - 1})",
                    file=SET_ORIGIN,
                    key=where,
                )
            if last:
                target[int(part)] = value
            else:
                target = target[int(part)]
            continue
        if not isinstance(target, dict):
            raise ConfigError(
                "cannot set a key below a value that is not a mapping or a list",
                file=SET_ORIGIN,
                key=".".join(path[:depth]),
            )
        if last:
            target[part] = value
        else:
            if target.get(part) is None:
                target[part] = {}
            target = target[part]
    _record_origin(layered, path, value, SET_ORIGIN)


def list_pipelines(conf_dir: Path | None = None) -> list[str]:
    """Names of the pipelines defined in `conf/base/pipelines/`."""
    base = (conf_dir or default_conf_dir()) / "base" / PIPELINES_DIR
    return sorted(p.stem for p in base.glob("*.yml"))


def load_config(
    pipeline: str | None = None,
    *,
    env: str | None = None,
    conf_dir: Path | str | None = None,
    overrides: Iterable[str] = (),
) -> AppConfig:
    """Load, merge and validate the configuration; raise `ConfigError` naming file and key.

    Args:
        pipeline: name of a pipeline spec under `conf/base/pipelines/`, or None for project only.
        env: environment overlay (`conf/<env>/`); defaults to $MLPIPE_ENV, else `local`.
        conf_dir: configuration directory; defaults to `default_conf_dir()`.
        overrides: `KEY.PATH=VALUE` strings applied last.

    The secrets it holds are registered with `pipeline.redact.REDACTOR` from then on.
    """
    return resolve_config(pipeline, env=env, conf_dir=conf_dir, overrides=overrides).config


@dataclass(frozen=True)
class Origin:
    """Where one configuration value came from."""

    source: str  # a file, `--set`, or "default"
    line: int | None = None
    env: tuple[str, ...] = ()  # the environment variables it was read from
    secret: bool = False

    def describe(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where} <- ${', $'.join(self.env)}" if self.env else where


@dataclass(frozen=True)
class Resolved:
    """A validated configuration and, for every key, where its value came from."""

    config: AppConfig
    layered: _Layered
    secret_paths: frozenset[KeyPath]

    def origin(self, path: Sequence[str]) -> Origin:
        key = tuple(path)
        file = self.layered.origin.get(key)
        secret = key in self.secret_paths
        if file is None:
            return Origin("default", secret=secret)
        line = self.layered.line_of(key) if file != SET_ORIGIN else None
        return Origin(file, line, tuple(self.layered.env.get(key, ())), secret)


def _secrets(layered: _Layered) -> tuple[set[KeyPath], set[str]]:
    """Secret keys and values: by name in the project's sections, URI passwords anywhere, values
    from secret-named environment variables, and any environment value in `spark.conf`."""
    paths: set[KeyPath] = set()
    values: set[str] = set()

    def walk(value: Any, path: KeyPath) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, str(k)))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, str(i)))
        elif isinstance(value, str) and value:
            names = layered.env.get(path, [])
            by_name = path[:1] != ("pipeline",) and is_secret_name(path[-1])
            from_env = path in layered.secrets and (
                path[:2] == ("spark", "conf") or any(is_secret_name(n) for n in names)
            )
            password = uri_password(value)
            # A URI read from a secret variable keeps its host and path visible; its password
            # (below) is the secret.
            if by_name or (from_env and password is None):
                paths.add(path)
                values.add(value)
            if password:
                values.add(password)

    walk(layered.data, ())
    return paths, values


def resolve_config(
    pipeline: str | None = None,
    *,
    env: str | None = None,
    conf_dir: Path | str | None = None,
    overrides: Iterable[str] = (),
) -> Resolved:
    """`load_config`, keeping where each value came from (for `mlpipe config`)."""
    root = Path(conf_dir) if conf_dir is not None else default_conf_dir()
    env_name = env or os.environ.get("MLPIPE_ENV") or "local"
    if not root.is_dir():
        raise ConfigError("configuration directory does not exist", file=str(root))
    base_project = root / "base" / PROJECT_FILE
    if not base_project.is_file():
        raise ConfigError("required base configuration file is missing", file=str(base_project))
    env_dir = root / env_name
    if env_name != "base" and not env_dir.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "base")
        raise ConfigError(
            f"unknown environment '{env_name}' (known: {', '.join(known) or 'none'})",
            file=str(env_dir),
        )

    layered = _Layered()
    files: list[tuple[Path, KeyPath]] = [(base_project, ()), (env_dir / PROJECT_FILE, ())]
    if pipeline is not None:
        spec = root / "base" / PIPELINES_DIR / f"{pipeline}.yml"
        if not spec.is_file():
            names = ", ".join(list_pipelines(root)) or "none"
            raise ConfigError(f"no pipeline named '{pipeline}' (known: {names})", file=str(spec))
        files += [
            (spec, ("pipeline",)),
            (env_dir / PIPELINES_DIR / f"{pipeline}.yml", ("pipeline",)),
        ]

    seen: set[Path] = set()
    for path, prefix in files:
        if path in seen or (path != base_project and not path.exists()):
            continue
        seen.add(path)
        raw, lines = read_yaml(path, prefix)
        env_here: dict[KeyPath, list[str]] = {}
        doc = _interpolate(raw, prefix, str(path), layered, lines, env_here)
        _merge(layered, doc, str(path), prefix, lines)
        layered.env.update(env_here)

    for key_path, value in parse_overrides(overrides):
        _apply_override(layered, key_path, value)

    secret_paths, secret_values = _secrets(layered)
    REDACTOR.add(secret_values)
    context = {"conf_dir": root, "env": env_name}
    try:
        config = AppConfig.model_validate(layered.data, context=context)
    except ValidationError as exc:
        raise _to_config_error(exc, layered) from None
    return Resolved(config, layered, frozenset(secret_paths))


def _to_config_error(exc: ValidationError, layered: _Layered) -> ConfigError:
    """One message for all problems, each naming its file and key; no value from the env is shown."""
    problems: list[tuple[str, int | None, str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        if err["type"] != "missing":
            # A union's member (`spark.shuffle_partitions.int`) is not a key: name the value.
            loc = loc[: _present(layered.data, loc)]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedError):
            loc += cause.key.split(".")
        key = ".".join(loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see conf/base for the known keys)"
        elif err["type"] == "missing":
            message = "required key is missing"
        for secret in layered.secret_values:
            message = message.replace(secret, "***")
        file = layered.origin_of(loc) or "(configuration)"
        line = layered.line_of(loc) if file != SET_ORIGIN else None
        problems.append((file, line, key, message))
    first_file, first_line, first_key, first_msg = problems[0]
    if len(problems) == 1:
        return ConfigError(first_msg, file=first_file, key=first_key, line=first_line)
    also = [
        f"  also {f}{f', line {n}' if n else ''}, key '{k}': {m}" for f, n, k, m in problems[1:]
    ]
    return ConfigError(
        "\n".join([first_msg, *also]), file=first_file, key=first_key, line=first_line
    )


def _present(data: Any, loc: Sequence[str]) -> int:
    """How many leading parts of `loc` address a value in `data`."""
    for depth, part in enumerate(loc):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return depth
    return len(loc)
