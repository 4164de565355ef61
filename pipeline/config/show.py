"""`mlpipe config`: the resolved configuration, secrets masked, each value with its origin."""

from __future__ import annotations

import json
from typing import Any

from pipeline.config.loader import Resolved
from pipeline.config.reader import KeyPath
from pipeline.redact import MASK, is_secret_name, redact


def _leaves(value: Any, path: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    if isinstance(value, dict) and value:
        return [kv for k, v in value.items() for kv in _leaves(v, (*path, str(k)))]
    if isinstance(value, list) and value:
        return [kv for i, v in enumerate(value) for kv in _leaves(v, (*path, str(i)))]
    return [(path, value)]


def render(resolved: Resolved) -> str:
    """One line per value, `key = value  # origin`, in the order of the models' fields.

    The origin is `file:line`, `--set`, or `default`, followed by `<- $VAR` when the value was
    read from the environment. Secret values (see `pipeline.redact`) show as ***.
    """
    rows: list[tuple[str, str, str]] = []
    for path, value in _leaves(resolved.config.model_dump(mode="json")):
        origin = resolved.origin(path)
        named = path[:1] != ("pipeline",) and bool(path) and is_secret_name(path[-1])
        if isinstance(value, str) and value and (origin.secret or named):
            shown = MASK
        else:
            shown = redact(value if isinstance(value, str) else json.dumps(value))
        rows.append((".".join(path), shown, origin.describe()))
    width = min(max(len(k) + len(v) + 3 for k, v, _ in rows), 72)
    return "\n".join(f"{f'{k} = {v}':<{width}}  # {o}" for k, v, o in rows)
