"""relay: the last mile of an Alertmanager setup.

Alertmanager posts webhooks to relay; relay routes each alert to Slack, email
and PagerDuty receivers, removes duplicates, and delivers from a durable outbox
with retries.
"""

__version__ = "0.1.0"
