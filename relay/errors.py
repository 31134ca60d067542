"""Every error relay raises on purpose, in one tree.

    RelayError
    ├── ConfigError                 routes.yaml or a template is unusable (file, line, reason)
    ├── StoreUnavailable            the outbox cannot commit; the webhook answers 503
    ├── StoreRejected               the store refuses the data itself (not an outage); the webhook answers 400
    ├── StartupError                relay cannot start: one line for the person starting it, no traceback
    ├── UsageError                  a command line that cannot work as given (exit 2, like argparse's own)
    ├── Rejected                    an HTTP request refused before anything is read or written (status, message)
    ├── AdminError                  the CLI cannot reach the running relay, or it refused; one line for the terminal
    ├── DeliveryUnfinished          a channel made progress but its time is up: continue at once (not a failure)
    └── DeliveryError               a channel failed to deliver a notification
        ├── TransientDeliveryError  try again later (connection, timeout, 5xx, 429, SMTP 4xx)
        └── PermanentDeliveryError  dead-letter at once (4xx, bad token, unset secret, template error)

What one send came to is a value, not an error: relay.attempt's Delivered, Unfinished and Failed (holding the
DeliveryError), so no exception steers the dispatcher. (A rate-limit token is taken before a claim, so no send
waits for one.)

Library errors (aiohttp, httpx, aiosmtplib, sqlite3, asyncpg) are translated
into this tree where they are caught and never travel further up. Messages
never contain secrets: channels build them from status codes and provider
error names, not from URLs or request bodies, and scrub what they quote.

A DeliveryError's `reason` is one of the closed `Reason` set, because it is a
metric label: a provider's own error name (Slack has hundreds) goes into the
`detail` and `code`, which history shows and metrics never do.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a delivery failed, as metrics count it; the closed set of `reason` label values."""

    CONNECTION = "connection"  # refused, reset, DNS
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"  # 429 or the provider's own rate-limit answer
    SERVER_ERROR = "server_error"  # 5xx, SMTP 4xx, a provider's internal error
    CLIENT_ERROR = "client_error"  # the provider refused what relay sent (400, SMTP 5xx)
    AUTH = "auth"  # 401/403, a revoked token, SMTP authentication
    NOT_FOUND = "not_found"  # 404/410, a channel or service that does not exist
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_RESPONSE = "invalid_response"  # an answer relay cannot read as success or failure
    TLS = "tls"  # the server's certificate is not trusted
    CONFIG = "config"  # the receiver's settings cannot work (bad URL, no STARTTLS offered, unknown receiver)
    UNCONFIGURED = "unconfigured"  # a secret or required setting is unset
    TEMPLATE = "template"
    STORE_UNAVAILABLE = "store_unavailable"  # relay's own store failed during the delivery
    INTERNAL = "internal"  # a bug in relay
    GAVE_UP = "gave_up"  # retried until give_up_after (dead letters only)


def http_reason(status: int) -> Reason:
    """The Reason for an HTTP answer that is not a success."""
    if status == 429:
        return Reason.RATE_LIMITED
    if status == 408:
        return Reason.TIMEOUT
    if status >= 500:
        return Reason.SERVER_ERROR
    if status in (401, 403):
        return Reason.AUTH
    if status in (404, 410):
        return Reason.NOT_FOUND
    if status == 413:
        return Reason.PAYLOAD_TOO_LARGE
    if 400 <= status < 500:
        return Reason.CLIENT_ERROR
    return Reason.INVALID_RESPONSE


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


class UsageError(RelayError):
    """The command line cannot work as given (a malformed k=v, two options that exclude each other)."""


class Rejected(RelayError):
    """A request refused before anything is read or written; `message` is for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminError(RelayError):
    """The running relay could not be reached or refused; the message is for the terminal, `reason` is the API's
    own word for a refusal when it gave one (a dead letter not replayed because its alerts have `resolved`)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class DeliveryUnfinished(RelayError):
    """Part of a notification went out (a large PagerDuty group) and the channel remembered which part; the
    attempt's time is up, so the rest is sent by another attempt started at once, without a backoff."""


class DeliveryError(RelayError):
    """A channel could not deliver: `reason` for metrics, `detail` (secret-free) and the provider's own error
    name `code` (e.g. Slack's `channel_not_found`) for history and logs."""

    def __init__(self, reason: Reason, detail: str = "", *, code: str = "") -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.code = code
        super().__init__(self.reason.value)  # not the detail: the detail may be scrubbed after this

    def __str__(self) -> str:  # from the fields, so a detail scrubbed later is what is shown
        return f"{self.reason}: {self.detail}" if self.detail else str(self.reason)


class TransientDeliveryError(DeliveryError):
    """Delivery may succeed later; `retry_after` is the provider's own hint in seconds."""

    def __init__(self, reason: Reason, detail: str = "", retry_after: float | None = None, *, code: str = "") -> None:
        super().__init__(reason, detail, code=code)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help; the notification becomes a dead letter with this reason."""
