"""tests/requirements.py: a test missing a tool skips on a developer's machine and fails where CI requires it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import requirements
from tests.requirements import ALERTMANAGER, Need

NEED = Need("RELAY_REQUIRE_SOMETHING")


@pytest.mark.parametrize("value", ["", "0"])
def test_without_the_variable_a_missing_tool_is_a_skip(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(NEED.variable, value)
    with pytest.raises(pytest.skip.Exception, match="needs frobnicate"):
        NEED.missing("needs frobnicate")
    with pytest.raises(pytest.skip.Exception, match="needs no-such-tool-here"):
        NEED.which("no-such-tool-here", install="apt-get install it")
    mark = NEED.unless("needs frobnicate")
    assert mark.name == "skip" and mark.kwargs["reason"] == "needs frobnicate"


def test_where_ci_requires_it_a_missing_tool_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NEED.variable, "1")
    with pytest.raises(pytest.fail.Exception, match=r"needs frobnicate \(RELAY_REQUIRE_SOMETHING is set"):
        NEED.missing("needs frobnicate")
    with pytest.raises(pytest.fail.Exception, match="needs no-such-tool-here"):
        NEED.which("no-such-tool-here", install="apt-get install it")
    with pytest.raises(RuntimeError, match="needs frobnicate"):
        NEED.unless("needs frobnicate")


def test_a_tool_that_is_here_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NEED.variable, "1")
    assert NEED.which("no-such-tool-here", "sh", install="-").endswith("/sh")
    mark = NEED.unless(None)
    assert mark.name == "skipif" and mark.args == (False,)


def test_ci_sets_every_variable_the_tests_read() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    needs = [value for value in vars(requirements).values() if isinstance(value, Need)]
    assert ALERTMANAGER in needs
    assert [n.variable for n in needs if f"export {n.variable}=1" not in ci] == []
