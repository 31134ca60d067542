"""The Slack bot receiver with Slack actions that the actions tests share, instead of a copy in each file."""

from __future__ import annotations

from tests.fakes.slack import TEAM_ID


def slack_bot(alertmanager: str = "${AM_API_URL:-}", *, more: str = "", team_id: str = TEAM_ID) -> str:
    """routes.yaml lines for the `slack-bot` receiver: a bot token (${SLACK_TOKEN}) posting to the suite's Slack
    (${SLACK_API_URL}) in #ojeomneo-alerts, with Slack actions for `team_id` that ask `alertmanager`. `more`:
    further lines of its `actions:`, indented eight spaces."""
    return ("  - name: slack-bot\n"
            "    slack:\n"
            "      token: ${SLACK_TOKEN}\n"
            '      channel: "#ojeomneo-alerts"\n'
            "      api_url: ${SLACK_API_URL}\n"
            "      actions:\n"
            f"        team_id: {team_id}\n"
            "        alertmanager:\n"
            f"          url: {alertmanager}\n"
            + (f"{more}\n" if more else ""))
