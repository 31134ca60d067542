"""Slack actions: the buttons on a Slack message (Acknowledge, Silence, Unsilence) and what a click does.

`endpoint` verifies and records a click (POST /slack/interactions) as an action row in the outbox; `perform`
carries one out when the dispatcher delivers it (Alertmanager first, then the message and its thread), reaching
Slack only through the `SlackApi` protocol the Slack channel satisfies; `alertmanager` is the Alertmanager API
client; `silences` watches what a Silence hid for a resolve Alertmanager will not send. `model` (what an action
row is) sits below the store and the channels, which keep and deliver those rows; this module imports nothing, so
importing `model` loads none of the rest. The buttons themselves are part of the message: relay.channels.slack.
"""
