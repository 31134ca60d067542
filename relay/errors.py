"""Every error relay raises on purpose, in one tree.

    RelayError
    ├── ConfigError                 routes.yaml or a template is unusable (file, line, reason)
    ├── StoreUnavailable            the outbox cannot commit; the webhook answers 503
    ├── StoreRejected               the store refuses the data itself (not an outage); the webhook answers 400
    ├── StartupError                relay cannot start: one line for the person starting it, no traceback
    └── DeliveryError               a channel failed to deliver a notification
        ├── TransientDeliveryError  try again later (connection, timeout, 5xx, 429, SMTP 4xx)
        └── PermanentDeliveryError  dead-letter at once (4xx, bad token, unset secret, template error)

Library errors (aiohttp, httpx, aiosmtplib, sqlite3, asyncpg) are translated
into this tree where they are caught and never travel further up. Messages
never contain secrets: channels build them from status codes and provider
error names, not from URLs or request bodies.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base of every error relay raises on purpose."""


class ConfigError(RelayError):
    """A configuration file is invalid; says where and why."""

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.reason}"


class StoreUnavailable(RelayError):
    """The store could not commit or answer; callers must not assume anything was written."""


class StoreRejected(RelayError):
    """The store refused a value it cannot hold; nothing was written, and sending the same data again cannot help,
    so it must never be reported as an outage (Alertmanager would re-send it, and its group, forever)."""


class StartupError(RelayError):
    """A start-up mistake the user can fix (a path, an address, a setting); the message is the whole story."""


class DeliveryError(RelayError):
    """A channel could not deliver; `reason` is a short, secret-free label used in metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class TransientDeliveryError(DeliveryError):
    """Delivery may succeed later; `retry_after` is the provider's own hint in seconds."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help; the notification becomes a dead letter with this reason."""
