"""What one render of a template may cost: the sandbox keeps a template from reaching Python, not from running long.

Jinja's sandbox caps one range() at 100,000 numbers, but two nested loops over range(100000) are 10^10 steps:
a 90-byte template held `relay routes check`, a reload's trial render and, at delivery, the event loop for good.
Each render gets a budget of numbers that range() may hand out, all its calls together, and the operators that
build big values from small ones (`*` repeating a string or list, `**`) are bounded: past either, the render fails
with a TemplateRuntimeError (at load: the file and why; at delivery: a permanent `template` failure, as any broken
template). Loops over the alerts themselves are bounded by the group, and stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.sandbox import safe_range

RANGE_BUDGET = 1_000_000  # numbers range() hands out in one render; relay's own templates use none
SIZE_LIMIT = 1_000_000  # items (characters) a `*` may build, and bits a `**` may
_left: ContextVar[list[int] | None] = ContextVar("relay_template_range_budget", default=None)


@contextmanager
def budget() -> Iterator[None]:
    """One render's budget (nested renders, e.g. an include, share their caller's)."""
    token = _left.set([RANGE_BUDGET]) if _left.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _left.reset(token)


def bounded_range(*args: int) -> range:
    """Jinja's safe_range, charged to the render's budget."""
    numbers = safe_range(*args)
    left = _left.get()
    if left is not None:
        left[0] -= len(numbers)
        if left[0] < 0:
            raise SecurityError(f"the template's loops count past {RANGE_BUDGET:,} numbers in one render")
    return numbers


def bounded_binop(operator: str, left: Any, right: Any) -> Any:
    """`*` and `**`, refused when the result would be larger than SIZE_LIMIT."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > SIZE_LIMIT:
                raise SecurityError(f"the template repeats a value to more than {SIZE_LIMIT:,} items")
        return left * right
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1 \
            and abs(left).bit_length() * right > SIZE_LIMIT:
        raise SecurityError(f"the template raises a number to more than {SIZE_LIMIT:,} bits")
    return left**right
