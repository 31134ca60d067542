"""relay: the last mile of an Alertmanager setup.

Alertmanager posts webhooks to relay; relay routes each alert to Slack, email
and PagerDuty receivers, removes duplicates, and delivers from a durable outbox
with retries.
"""

from importlib import metadata

try:
    __version__ = metadata.version("relay")  # pyproject.toml's version, as installed: one place to bump it
except metadata.PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"
