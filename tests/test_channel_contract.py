"""The shared channel checks themselves: the no-secret assertion finds every form it claims to, the outcome table
row rejects what it should, and relay's own scrub() passes the independent no-secret check."""

from __future__ import annotations

import pytest

from relay.channels.base import scrub
from relay.errors import PermanentDeliveryError, Reason, TransientDeliveryError
from tests.channel_contract import (
    OK,
    PERMANENT,
    TRANSIENT,
    Expected,
    assert_leaks_no_secret,
    assert_outcome,
    contract_case,
    forms,
    outcome_of,
    shown,
)

URL = "https://hooks.slack.com/services/T0000/B0000/XXXXSECRETxxxx+=42&x"
TOKEN = URL.rsplit("/", 1)[-1]


@pytest.mark.parametrize("leaked", sorted({*forms(URL).values(), *forms(TOKEN).values()}))
def test_every_quoted_form_of_a_secret_is_found(leaked: str) -> None:
    with pytest.raises(AssertionError, match="leaks"):
        assert_leaks_no_secret(["ok", f"HTTP 404: {leaked} (echoed by a proxy)"], [URL, TOKEN])


@pytest.mark.parametrize("leaked", [TOKEN.upper(), TOKEN[:8], TOKEN[-9:], "…" + TOKEN[3:12] + "…"],
                         ids=["other-case", "cut-after-8", "masked-but-the-end", "middle"])
def test_a_secret_in_another_case_or_in_part_is_found(leaked: str) -> None:
    with pytest.raises(AssertionError, match="leaks"):
        assert_leaks_no_secret([f"detail {leaked}"], [TOKEN])


def test_texts_without_the_secret_pass_and_whole_forms_only_allow_fragments() -> None:
    assert_leaks_no_secret(["HTTP 404 channel_not_found", "https://hooks.slack.com/services/*** said no"], [TOKEN])
    assert_leaks_no_secret([f"…{TOKEN[:8]}…"], [TOKEN], fragment=None)
    assert_leaks_no_secret(["anything"], ["", "short"])  # an unset secret is no needle; a short one is whole only


def test_the_failure_message_names_the_form_not_the_secret() -> None:
    with pytest.raises(AssertionError) as failure:
        assert_leaks_no_secret([f"x {TOKEN} y"], [TOKEN])
    assert TOKEN not in str(failure.value) and "(as is)" in str(failure.value)


@pytest.mark.parametrize("form", sorted(set(forms(URL).values())))
def test_relay_scrub_removes_every_form_the_contract_knows(form: str) -> None:
    text = f"HTTP 404 Not Found: {form} and {form.upper()} again"
    assert_leaks_no_secret([scrub(text, [URL])], [URL, TOKEN])


def test_shown_covers_the_error_its_traceback_and_extra_texts() -> None:
    exc = PermanentDeliveryError(Reason.AUTH, "bad", code=TOKEN)
    with pytest.raises(AssertionError):
        assert_leaks_no_secret(shown(exc), [TOKEN])  # the provider's code is shown in history too
    with pytest.raises(AssertionError):
        assert_leaks_no_secret(shown(None, f"log line {TOKEN}"), [TOKEN])
    assert_leaks_no_secret(shown(TransientDeliveryError(Reason.TIMEOUT, "no answer in 5s")), [TOKEN])


async def _fails(exc: Exception) -> None:
    raise exc


async def _delivers() -> None:
    return None


TABLE = [
    contract_case(_delivers, Expected(OK), id="ok"),
    contract_case(lambda: _fails(TransientDeliveryError(Reason.RATE_LIMITED, "HTTP 429", retry_after=7.0)),
                  Expected(TRANSIENT, Reason.RATE_LIMITED, 7.0), id="429"),
    contract_case(lambda: _fails(PermanentDeliveryError(Reason.NOT_FOUND, "HTTP 404", code="channel_not_found")),
                  Expected(PERMANENT, Reason.NOT_FOUND, code="channel_not_found"), id="404"),
]


@pytest.mark.parametrize(("answer", "expected"), TABLE)
async def test_a_row_accepts_the_outcome_it_names(answer: object, expected: Expected) -> None:
    assert callable(answer)
    assert_outcome(await outcome_of(answer()), expected)


@pytest.mark.parametrize(("got", "expected"), [
    (None, Expected(TRANSIENT, Reason.TIMEOUT)),
    (TransientDeliveryError(Reason.TIMEOUT), Expected(OK)),
    (TransientDeliveryError(Reason.TIMEOUT), Expected(PERMANENT, Reason.TIMEOUT)),
    (PermanentDeliveryError(Reason.AUTH), Expected(PERMANENT, Reason.CLIENT_ERROR)),
    (TransientDeliveryError(Reason.RATE_LIMITED, retry_after=None), Expected(TRANSIENT, Reason.RATE_LIMITED, 30.0)),
    (PermanentDeliveryError(Reason.NOT_FOUND, code="no_service"), Expected(PERMANENT, Reason.NOT_FOUND,
                                                                          code="channel_not_found")),
], ids=["delivered-not-failed", "failed-not-delivered", "wrong-class", "wrong-reason", "retry-after", "code"])
def test_a_row_rejects_another_outcome(got: TransientDeliveryError | PermanentDeliveryError | None,
                                       expected: Expected) -> None:
    with pytest.raises(AssertionError):
        assert_outcome(got, expected)


def test_a_row_must_be_coherent() -> None:
    with pytest.raises(ValueError, match="names its reason"):
        Expected(PERMANENT)
    with pytest.raises(ValueError, match="names its reason"):
        Expected(OK, Reason.AUTH)
    with pytest.raises(ValueError, match="Retry-After"):
        Expected(PERMANENT, Reason.RATE_LIMITED, 5.0)
