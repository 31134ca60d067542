"""Slack: the channel (webhook and bot-token sending), the Block Kit message it posts, and its thread bookkeeping."""

from __future__ import annotations

from relay.channels.slack.channel import SlackChannel

__all__ = ["SlackChannel"]
