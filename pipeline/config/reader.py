"""Reading one YAML configuration file, refusing what would otherwise pass silently or hang.

A file over MAX_FILE_BYTES, text that is not UTF-8, invalid YAML, a key given twice in one mapping
(a second section would silently replace the first), aliases that expand beyond MAX_VALUES values
(an alias bomb): each is a `ConfigError` naming the file, the key and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

KeyPath = tuple[str, ...]
MAX_FILE_BYTES = 1 << 20  # a configuration file is text a person wrote: 1 MiB is far beyond that
MAX_VALUES = 20_000  # values after aliases are expanded: bounds an alias bomb, not a real file


def read_yaml(path: Path, prefix: KeyPath = ()) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """The mapping in a YAML file, and the line of every key and list item in it (their paths
    below `prefix`, where the file is merged).

    Refused with the file and line: a file over MAX_FILE_BYTES, text that is not UTF-8, invalid
    YAML, a key given twice in one mapping, aliases that expand beyond MAX_VALUES values.
    """
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"the file is {size} bytes; a configuration file may have at most "
                f"{MAX_FILE_BYTES} bytes",
                file=file,
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=file) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} (save the file as UTF-8)",
            file=file,
            line=line,
        ) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        lines: dict[KeyPath, int] = {}
        _check_node(node, prefix, file, lines, budget=[MAX_VALUES])
        loaded = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"invalid YAML{where}: {problem}", file=file) from None
    finally:
        loader.dispose()
    if loaded is None:
        return {}, {}
    if not isinstance(loaded, dict):
        raise ConfigError("the top level must be a mapping of keys to values", file=file, line=1)
    return loaded, lines


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_node(
    node: yaml.Node,
    path: KeyPath,
    file: str,
    lines: dict[KeyPath, int],
    *,
    budget: list[int],
) -> None:
    """Walk a composed YAML node: refuse duplicate keys and alias bombs, record lines.

    An alias is the same node object met again, so the walk counts every value as many times as
    it will appear once expanded, and stops at the budget (before anything is expanded).
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(
            f"the document expands to more than {MAX_VALUES} values (aliases used over and "
            "over?); write the values out or split the file",
            file=file,
            key=".".join(path) or None,
            line=node.start_mark.line + 1,
        )
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                _check_node(value_node, path, file, {}, budget=budget)
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(
                    f"key given twice in one mapping, at lines {first[key]} and {line} (the "
                    "second would silently replace the first)",
                    file=file,
                    key=".".join((*path, key)),
                    line=line,
                )
            first[key] = line
            lines.setdefault((*path, key), line)
            _check_node(value_node, (*path, key), file, lines, budget=budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault((*path, str(i)), item.start_mark.line + 1)
            _check_node(item, (*path, str(i)), file, lines, budget=budget)
