"""Load YAML with `${VAR}` expansion and remember the line of every value.

Expansion happens on scalar values after parsing, so a secret never passes
through the YAML parser's error messages and line numbers stay true. The
line map lets schema errors name the line a user must fix.

A configuration file is small, and a change to it is reviewed and hot-reloaded, so relay bounds what one can
cost: its size (MAX_FILE_BYTES), its nesting (MAX_DEPTH) and how many values its aliases may expand to
(MAX_VALUES): a 500-byte alias bomb is refused in milliseconds with one line, not expanded into gigabytes.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from relay.errors import ConfigError

Path_ = tuple[str | int, ...]

MAX_FILE_BYTES = 1024 * 1024  # routes.yaml and each template file; the repository's routes.yaml is under 3 KB
MAX_DEPTH = 64  # nested mappings and lists; routes.yaml needs about 8
MAX_VALUES = 100_000  # values after aliases expand: far above any routes.yaml, far below what hurts

# `load(..., environ=AS_WRITTEN)`: expand nothing from the environment. `${VAR:-default}` becomes its default
# (written in the file itself) and `${VAR}` stays `${VAR}`, as review mode (routes diff, check --strict) shows it:
# a pull request's routes.yaml must not read the CI job's secrets into a comment.
AS_WRITTEN: Mapping[str, str] = types.MappingProxyType({})

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, environ: Mapping[str, str], defaulted: list[str] | None = None) -> str:
    """Replace `${VAR}` and `${VAR:-default}`; an unset VAR without default becomes empty (with AS_WRITTEN it stays
    `${VAR}`). The names of unset variables whose non-empty default was used are added to `defaulted`."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name, "")
        if value == "" and default is not None:
            if default and defaulted is not None:
                defaulted.append(name)
            return default
        return match.group(0) if environ is AS_WRITTEN else value

    return _VAR.sub(sub, text)


def read_text(file: Path, limit: int = MAX_FILE_BYTES) -> str:
    """A configuration file's text: at most `limit` bytes of UTF-8, else a ConfigError naming the file (and the line
    of a byte that is not UTF-8)."""
    try:
        with file.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(file)) from None
    if len(data) > limit:
        raise ConfigError(f"larger than {limit // 1024} KB: refused (a configuration file this big is a mistake)",
                          file=str(file))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"byte 0x{data[exc.start]:02x} is not UTF-8: save the file as UTF-8", file=str(file),
                          line=line) from None


# PyYAML's problems, in words a person editing routes.yaml can act on (the first that applies is shown).
_PLAIN = (
    ("expected <block end>", "the indentation does not line up: this line is indented differently from the keys "
                             "or list items above it"),
    ("mapping values are not allowed", "a ':' where a value was expected: indent the nested keys, or quote a value "
                                       "that holds ': '"),
    ("cannot start any token", "a character that cannot start a value here (a tab? indent with spaces; quote "
                               "values that start with @ or `)"),
    ("could not find expected ':'", "a key without ':' after it, or a quote that is not closed"),
    ("found undefined alias", "an alias (*name) with no anchor (&name) above it"),
    ("found unexpected end of stream", "the file ends inside a quoted value: a quote is not closed"),
    ("expected ',' or ']'", "a [list] that is not closed with ']' (or a missing comma)"),
    ("expected ',' or '}'", "a {mapping} that is not closed with '}' (or a missing comma)"),
    ("expected the node content", "a value is missing here"),
    ("found unknown escape character", "an unknown backslash escape inside double quotes: use single quotes, or "
                                       "write \\\\ for a backslash"),
    ("did not find expected key", "a line that is not a 'key: value' at this indentation"),
    ("did not find expected '-' indicator", "a list item that does not start with '- ' at this indentation"),
    ("found duplicate anchor", "the same anchor (&name) twice"),
)


def _plain(exc: yaml.MarkedYAMLError) -> str:
    problem = f"{exc.problem or ''} {exc.context or ''}"
    said = next((words for key, words in _PLAIN if key in problem), None)
    return f"invalid YAML: {said}" if said else f"invalid YAML: {exc.problem or exc.context}"


def compose(text: str, file: Path) -> yaml.Node | None:
    """Parse YAML into nodes (aliases shared, not yet expanded); errors in plain words with the file and line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(_plain(exc), file=str(file), line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=str(file)) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than relay reads (at most {MAX_DEPTH} levels)", file=str(file)) from None


class _Builder:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.lines: dict[Path_, int] = {}
        self.defaulted: dict[Path_, list[str]] = {}  # path -> unset variables whose default filled it
        self.budget = _Budget()
        self._constructor = yaml.SafeLoader.__new__(yaml.SafeLoader)
        yaml.constructor.SafeConstructor.__init__(self._constructor)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.budget.charge(node, len(path))
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


class _Budget:
    """What walking one file's nodes may cost: an alias is charged each time it is used, as expanding it would."""

    def __init__(self) -> None:
        self.values = 0

    def charge(self, node: yaml.Node, depth: int) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise ConfigError(f"its aliases expand to more than {MAX_VALUES:,} values: refused (an alias bomb?)",
                              line=node.start_mark.line + 1)
        if depth >= MAX_DEPTH:
            raise ConfigError(f"nested deeper than {MAX_DEPTH} levels (or an alias that contains itself)",
                              line=node.start_mark.line + 1)


def load(file: Path, environ: Mapping[str, str] | None = None,
         defaulted: dict[Path_, list[str]] | None = None) -> tuple[Any, dict[Path_, int]]:
    """Parse `file`; return the data with variables expanded (from os.environ, `environ`, or not at all with
    AS_WRITTEN), and the line of every path in it. `defaulted`, when given, receives the paths whose value came
    from a `${VAR:-default}` with VAR unset."""
    node = compose(read_text(file), file)
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
    node = compose(read_text(file), file)
    found: list[tuple[str, str | None, int]] = []
    stack = [(node, 0)] if node is not None else []
    budget = _Budget()
    while stack:
        current, depth = stack.pop()
        try:
            budget.charge(current, depth)
        except ConfigError as exc:
            raise ConfigError(exc.reason, file=str(file), line=exc.line) from None
        if isinstance(current, yaml.MappingNode):
            stack.extend((value, depth + 1) for _, value in current.value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in current.value)
        elif isinstance(current.value, str):
            found += [(m.group(1), m.group(2), current.start_mark.line + 1) for m in _VAR.finditer(current.value)]
    return sorted(found, key=lambda ref: (ref[2], ref[0]))
