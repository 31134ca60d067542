"""Checks every channel's tests share (as Alertmanager's notify/test): one outcome table shape, one no-secret check.

A row of a channel's table is `contract_case(answer, Expected(...), id=...)`: the provider answer the test sets up
(the channel's own kind of scenario) and what relay must make of it. `assert_outcome` checks a send's result
against the row; `assert_leaks_no_secret` checks every text a user could see (the error, its traceback, the
logs, history) for a secret in any form a provider or library might quote it in.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, quote_plus

import pytest

from relay.errors import DeliveryError, PermanentDeliveryError, Reason, TransientDeliveryError

Outcome = Literal["ok", "transient", "permanent"]
OK: Outcome = "ok"
TRANSIENT: Outcome = "transient"
PERMANENT: Outcome = "permanent"
FRAGMENT = 8  # no run of this many characters of a secret may appear (a cut or partly masked secret)


@dataclass(frozen=True)
class Expected:
    """What relay makes of one provider answer: the outcome class, its closed reason, Retry-After, the provider's
    own error name (`code`, e.g. Slack's `channel_not_found`) when the answer names one."""

    outcome: Outcome
    reason: Reason | None = None
    retry_after: float | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if (self.outcome == OK) != (self.reason is None):
            raise ValueError("a failure names its reason, a success none")
        if self.retry_after is not None and self.outcome != TRANSIENT:
            raise ValueError("only a transient failure waits for Retry-After")


def contract_case(answer: Any, expected: Expected, *, id: str) -> Any:
    """One row of a channel's outcome table: `@pytest.mark.parametrize(("answer", "expected"), TABLE)`."""
    return pytest.param(answer, expected, id=id)


async def outcome_of(send: Awaitable[object]) -> DeliveryError | None:
    """The DeliveryError a send raised, or None when it delivered (anything else propagates: a bug)."""
    try:
        await send
    except DeliveryError as exc:
        return exc
    return None


def assert_outcome(exc: DeliveryError | None, expected: Expected) -> None:
    if expected.outcome == OK:
        assert exc is None, f"expected delivered, got {exc!r}"
        return
    kind = TransientDeliveryError if expected.outcome == TRANSIENT else PermanentDeliveryError
    assert isinstance(exc, kind), f"expected {kind.__name__}({expected.reason}), got {exc!r}"
    assert exc.reason is expected.reason, f"reason {exc.reason!r}, expected {expected.reason!r}"
    if isinstance(exc, TransientDeliveryError):
        assert exc.retry_after == expected.retry_after, f"Retry-After {exc.retry_after}, not {expected.retry_after}"
    if expected.code is not None:
        assert exc.code == expected.code, f"code {exc.code!r}, expected {expected.code!r}"


def shown(exc: BaseException | None, *more: str) -> list[str]:
    """Every text a failure puts in front of a user: str, repr, the whole traceback, reason/detail/code; and `more`
    (e.g. `caplog.text`, a history row)."""
    texts = list(more)
    if exc is not None:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        if isinstance(exc, DeliveryError):
            texts += [exc.reason.value, exc.detail, exc.code]
    return texts


def forms(secret: str) -> dict[str, str]:
    """A secret as it may be quoted back, by kind, built here and not with relay's own list (so the two can
    disagree): as is, URL-encoded (path and form styles), JSON-escaped (also with `\\/`), base64."""
    encoded = json.dumps(secret)[1:-1]
    return {"as is": secret, "url-encoded": quote(secret, safe=""), "url-encoded path": quote(secret, safe="/"),
            "form-encoded": quote_plus(secret), "json-escaped": encoded, "json-escaped slashes": encoded.replace(
                "/", "\\/"), "json unicode": json.dumps(secret, ensure_ascii=False)[1:-1],
            "base64": base64.b64encode(secret.encode()).decode()}


def assert_leaks_no_secret(texts: Iterable[str], secrets: Iterable[str], fragment: int | None = FRAGMENT) -> None:
    """No text holds a secret in any form of `forms` (case-insensitively: hex escapes come in both cases), nor any
    `fragment` consecutive characters of it (a secret cut at a limit, or masked but for its end).

    Pass the secret part of a URL (a webhook path's token) as well as the URL: a fragment of `https://hooks.`
    is no leak. `fragment=None` checks whole forms only. A failure says which secret, in which form and where,
    with the secret itself masked (test output is read too).
    """
    texts = list(texts)
    for number, secret in enumerate(secrets):
        if not secret:
            continue
        needles: dict[str, str] = {}
        for kind, form in forms(secret).items():  # the first kind of a form names it ("as is" before the rest)
            needles.setdefault(form.lower(), kind)
        if fragment is not None and len(secret) > fragment:
            for i in range(len(secret) - fragment + 1):
                needles.setdefault(secret[i:i + fragment].lower(), f"characters {i}-{i + fragment - 1}")
        for text in texts:
            lowered = text.lower()
            for needle in sorted(needles, key=len, reverse=True):
                at = lowered.find(needle)
                end = at + len(needle)
                assert at < 0, (f"secret #{number} leaks ({needles[needle]}): "
                                f"{text[max(0, at - 60):at]!r} <SECRET> {text[end:end + 60]!r}")
