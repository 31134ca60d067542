"""Alertmanager label matchers: `name="value"`, `!=`, `=~`, `!~`, regexes anchored at both ends."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_MATCHER = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^"]*?)\s*$"""
)
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

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
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; raises ValueError with the reason for a bad one."""
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(f'bad matcher {text!r}: expected name="value" with one of =, !=, =~, !~')
    raw = match.group("value")
    value = _UNESCAPE.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
    op = match.group("op")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex in matcher {text!r}: {exc}") from None
    return Matcher(match.group("name"), op, value, regex)


def parse_matchers(value: Any) -> Any:
    """A routes.yaml `matchers:` list, for a pydantic `before` validator: strings become Matchers."""
    if not isinstance(value, list):
        raise ValueError("matchers must be a list of strings like 'severity=\"critical\"'")
    return [parse_matcher(v) if isinstance(v, str) else v for v in value]
