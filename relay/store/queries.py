"""Each dialect's SQL as named, described statements (sql/<dialect>.sql), loaded once.

A block starts with `-- name --` and a one-line `-- description`; its statement runs to the next block. Both
dialects use the same name for the same statement, so relay.store.common names what it runs and each store's file
says how its database does it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType

HEADER = re.compile(r"^-- ([a-z_]+) --\n((?:--.*\n)+)", re.MULTILINE)


@cache
def load(dialect: str) -> Mapping[str, str]:
    """name → statement for one dialect, read once from the package."""
    return MappingProxyType(parse(resources.files("relay.store").joinpath(f"sql/{dialect}.sql").read_text(),
                                  f"sql/{dialect}.sql"))


def parse(text: str, origin: str) -> dict[str, str]:
    """A block without a description or a statement, a name given twice, or text before the first block is refused."""
    heads = list(HEADER.finditer(text))
    if not heads or text[:heads[0].start()].strip():
        raise RuntimeError(f"{origin} must start with a `-- name --` block")
    found: dict[str, str] = {}
    for head, nxt in zip(heads, [*heads[1:], None], strict=True):
        name = head.group(1)
        body = text[head.end():nxt.start() if nxt else len(text)].strip()
        if name in found or not body:
            raise RuntimeError(f"{origin}: block {name!r} is empty or given twice")
        found[name] = body + "\n"
    return found
