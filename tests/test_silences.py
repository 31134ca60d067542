"""relay.actions.silences: when an alert's absence from Alertmanager counts as its resolve (issue 20). The whole
watch, with the real Alertmanager restarted under it, is tests/e2e/test_slack_actions.py."""

from __future__ import annotations

import pytest

from relay.actions.silences import counted_absence

GRACE = 300.0


@pytest.mark.parametrize(("since", "up_for", "now", "counted"), [
    (None, 10.0, 1000.0, None),  # just restarted: its [] is no evidence
    (900.0, 299.0, 1000.0, None),  # restarted since the count began (up less than the grace): no evidence at all
    (None, 300.0, 1000.0, 1000.0),  # up long enough: the count starts now
    (900.0, 5000.0, 1000.0, 900.0),  # up all along: the count goes on
    (900.0, 350.0, 1000.0, 1000.0),  # up long enough now, but restarted after the count began: it starts again
    (950.0, 350.0, 1000.0, 950.0),  # it was up for the grace period already when the count began
])
def test_an_absence_counts_only_from_an_alertmanager_up_for_the_grace_period(
        since: float | None, up_for: float, now: float, counted: float | None) -> None:
    assert counted_absence(since, up_for, now, GRACE) == counted


def test_a_restart_every_few_minutes_never_makes_an_absence_a_resolve() -> None:
    """Asked every 60 s, Alertmanager restarting every 6 minutes and never learning the alert again: the count never
    reaches the grace period, so relay never shows a resolve (Alertmanager must say so itself, or be up long enough)."""
    since = None
    for now in range(0, 7200, 60):
        since = counted_absence(since, float(now % 360), float(now), GRACE)
        assert since is None or now - since < GRACE
