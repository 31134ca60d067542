"""Builds the channel for a receiver, so the dispatcher never names an integration itself."""

from __future__ import annotations

import aiohttp

from relay.channels.base import Channel
from relay.channels.discord import DiscordChannel
from relay.channels.email import EmailChannel
from relay.channels.pagerduty import PagerDutyChannel
from relay.channels.slack import SlackChannel
from relay.channels.slack.channel import PerformAction
from relay.channels.teams import TeamsChannel
from relay.channels.telegram import TelegramChannel
from relay.channels.webhook import WebhookChannel
from relay.config.receivers import ReceiverConfig
from relay.templating import Templates


def build_channel(receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession, *,
                  perform: PerformAction | None = None) -> Channel:
    """The channel of the receiver's integration; email receivers must already carry `global.smtp_*`. `perform`
    carries out a Slack receiver's action rows (relay.actions.perform)."""
    integration = receiver.integration
    if integration == "slack":
        return SlackChannel(receiver, templates, session, perform=perform)
    if integration == "email":
        return EmailChannel(receiver, templates)
    if integration == "webhook":
        return WebhookChannel(receiver, templates, session)
    if integration == "discord":
        return DiscordChannel(receiver, templates, session)
    if integration == "telegram":
        return TelegramChannel(receiver, templates, session)
    if integration == "teams":
        return TeamsChannel(receiver, templates, session)
    return PagerDutyChannel(receiver, templates, session)
