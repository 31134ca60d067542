"""Load YAML with `${VAR}` expansion and remember the line of every value.

Expansion happens on scalar values after parsing, so a secret never passes
through the YAML parser's error messages and line numbers stay true. The
line map lets schema errors name the line a user must fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from relay.errors import ConfigError

Path_ = tuple[str | int, ...]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, environ: Mapping[str, str], defaulted: list[str] | None = None) -> str:
    """Replace `${VAR}` and `${VAR:-default}`; an unset VAR without default becomes empty. The names of unset
    variables whose non-empty default was used are added to `defaulted`."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name, "")
        if value == "" and default is not None:
            if default and defaulted is not None:
                defaulted.append(name)
            return default
        return value

    return _VAR.sub(sub, text)


class _Builder:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.lines: dict[Path_, int] = {}
        self.defaulted: dict[Path_, list[str]] = {}  # path -> unset variables whose default filled it
        self._constructor = yaml.SafeLoader.__new__(yaml.SafeLoader)
        yaml.constructor.SafeConstructor.__init__(self._constructor)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(self._scalar(key_node))
                if key in out:
                    raise ConfigError(f"duplicate key {key!r}", line=key_node.start_mark.line + 1)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path_ = ()) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError("expected a plain value here", line=node.start_mark.line + 1)
        if isinstance(node.value, str) and "${" in node.value:
            defaulted: list[str] = []
            value = expand(node.value, self.environ, defaulted)
            if defaulted:
                self.defaulted[path] = defaulted
            return value
        return self._constructor.construct_object(node)


def load(file: Path, environ: Mapping[str, str] | None = None,
         defaulted: dict[Path_, list[str]] | None = None) -> tuple[Any, dict[Path_, int]]:
    """Parse `file`; return the data with variables expanded, and the line of every path in it. `defaulted`, when
    given, receives the paths whose value came from a `${VAR:-default}` with VAR unset."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(file)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc.context}", file=str(file), line=line) from None
    if node is None:
        raise ConfigError("file is empty", file=str(file), line=1)
    builder = _Builder(os.environ if environ is None else environ)
    try:
        data = builder.build(node, ())
    except ConfigError as exc:
        raise ConfigError(exc.reason, file=str(file), line=exc.line) from None
    if defaulted is not None:
        defaulted.update(builder.defaulted)
    return data, builder.lines


def line_of(lines: Mapping[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest parent that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def references(file: Path) -> list[tuple[str, str | None, int]]:
    """Every `${VAR}` in the file's values, as (name, default or None, line): for `routes check --strict`."""
    node = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    found: list[tuple[str, str | None, int]] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            stack.extend(value for _, value in current.value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current.value, str):
            found += [(m.group(1), m.group(2), current.start_mark.line + 1) for m in _VAR.finditer(current.value)]
    return sorted(found, key=lambda ref: (ref[2], ref[0]))
