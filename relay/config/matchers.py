"""Alertmanager label matchers, parsed and matched as Alertmanager does.

Syntax and quoting are those of Alertmanager's matcher parser (pkg/labels/parse.go): `name="value"` with `=`,
`!=`, `=~` or `!~`, the value quoted or not; inside it `\\"`, `\\n` and `\\\\` are escapes and any other backslash
stays a backslash (so `=~"10\\.0\\..*"` keeps its escaped dots). One routes.yaml item may hold one matcher, a
comma list (`'severity="warning", team="web"'`) or a brace list (`'{alertname=~"Disk.*", env!="dev"}'`).

Regexes are RE2, as Go's regexp that Alertmanager uses, and anchored at both ends: matching takes time linear in
the label's length, so no label value can stall the event loop, and a pattern RE2 refuses (a backreference, a
lookahead) is refused at load, as `amtool check-config` refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

# Alertmanager's expression for one matcher (name, operator, the rest as the raw value), on the stripped text: the
# same split without a lazy `.*?` before `\s*$`, which is quadratic in a long run of spaces.
_MATCHER = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*)", re.DOTALL)
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is a ConfigError, not a line on stderr


@runtime_checkable
class Pattern(Protocol):
    """A compiled RE2 regex, as far as relay uses it."""

    def fullmatch(self, text: str) -> object | None: ...


class MatcherError(ValueError):
    """A matcher relay (and Alertmanager) would refuse; `item` is its position in the routes.yaml list."""

    def __init__(self, reason: str, item: int | None = None) -> None:
        super().__init__(reason)
        self.item = item


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: Pattern | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        # A missing label matches as the empty string, as in Alertmanager.
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def compile_regex(pattern: str) -> Pattern:
    """RE2, anchored at both ends by fullmatch; raises ValueError with RE2's reason for what it refuses, and for
    `\\C` (any byte), which RE2 takes and Go's regexp, Alertmanager's, refuses."""
    if _any_byte(pattern):
        raise ValueError("invalid escape sequence: \\C (regexes are RE2, as in Alertmanager, which has no \\C)")
    try:
        return re2.compile(pattern, _OPTIONS)  # type: ignore[no-any-return]
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(f"{reason} (regexes are RE2, as in Alertmanager: no backreferences or lookarounds)") from None


def _unquote(raw: str, text: str) -> str:
    """The value as Alertmanager reads it: OpenMetrics escapes, a lone backslash kept, no bare quote inside."""
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    out: list[str] = []
    escaped = False
    for i, char in enumerate(body):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
        elif char == "\\" and i < len(body) - 1:
            escaped = True
        elif char == '"':
            if not quoted or i < len(body) - 1:
                raise ValueError(f'matcher {text!r}: a double quote inside the value must be written \\"')
            quoted = False
        else:
            out.append(char)
    if quoted:
        raise ValueError(f"matcher {text!r}: the value's closing double quote is missing")
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raises ValueError with the reason for a bad one."""
    match = _MATCHER.fullmatch(text.strip())
    if not match:
        raise ValueError(f'bad matcher {text.strip()!r}: expected name="value" with one of =, !=, =~, !~')
    name, op, raw = match.groups()
    value = _unquote(raw, text.strip())
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = compile_regex(value)
        except ValueError as exc:
            raise ValueError(f"bad regex in matcher {text.strip()!r}: {exc}") from None
    return Matcher(name, op, value, regex)


def split_matchers(text: str) -> list[str]:
    """One routes.yaml item into its matchers: a brace or comma list is split at commas outside double quotes."""
    inner = text.strip()
    inner = inner.removeprefix("{").removesuffix("}")
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in inner:
        if char == ",":
            if not quoted:
                parts.append("".join(current))
                current = []
                continue
        elif char == '"':
            quoted = quoted if escaped else not quoted
            escaped = False
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(char)
    last = "".join(current).strip()
    if last:
        parts.append(last)  # a trailing comma (and space) is allowed, as in Alertmanager
    return parts


def parse_matchers(value: Any) -> Any:
    """A routes.yaml `matchers:` list, for a pydantic `before` validator: each string becomes its Matchers."""
    if not isinstance(value, list):
        raise ValueError("matchers must be a list of strings like 'severity=\"critical\"'")
    out: list[Any] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            out.append(item)
            continue
        try:
            out += [parse_matcher(part) for part in split_matchers(item)]
        except ValueError as exc:
            raise MatcherError(str(exc), i) from None
    return out


def _any_byte(pattern: str) -> bool:
    """Whether `pattern` holds the escape \\C outside a \\Q...\\E literal (a backslash always takes the next
    character with it, so \\\\C is a backslash and a C)."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] != "\\":
            i += 1
        elif pattern[i + 1] == "Q":
            end = pattern.find("\\E", i + 2)
            if end < 0:
                return False
            i = end + 2
        elif pattern[i + 1] == "C":
            return True
        else:
            i += 2
    return False
