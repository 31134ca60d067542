"""Logging setup: one line per event, JSON for machines or plain text for people.

A JSON line holds `ts`, `level`, `logger`, `msg` (and `exc` for a traceback), then every `extra` the call passed,
so a log search can filter on them. A delivery's lines carry `delivery_fields`: receiver, notification_id,
alertname, fingerprint, alerts, outcome, reason, latency_ms. Nothing in them is a secret: receiver names, label
values Alertmanager sent and relay's own reasons; a provider's error text is in `msg`, already scrubbed
(relay.attempt). The console line stays the message alone.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from relay.alerts import Notification

# A group's fingerprints (and alert names) beyond this many are left out of its lines (`alerts` still counts
# them all): a 20,000-alert group would otherwise make one line of a third of a megabyte.
FINGERPRINTS_LOGGED = 10
# LogRecord attributes that are not an `extra`, and uvicorn's `color_message` (the message again, with terminal
# colour codes).
NOT_EXTRA = [*RESERVED_ATTRS, "color_message"]


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with relay's field names: `ts` in UTC with milliseconds, `level` in lower
    case, `logger`, `msg`, `exc`; text is written as UTF-8, not \\u-escaped (Korean annotations stay readable)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"},
                         reserved_attrs=NOT_EXTRA, json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()


def delivery_fields(notification: Notification, outcome: str, reason: str | None = None,
                    now: float | None = None) -> dict[str, object]:
    """The `extra` of a line about one notification's attempt: `outcome` is the word history records (delivered,
    retry, dead, deferred); `latency_ms` is how long relay has held the notification (received to this line), the
    time the relay_delivery_latency_seconds histogram measures for a delivery."""
    alerts = notification.alerts
    held = (time.time() if now is None else now) - notification.received_at.timestamp()
    return {
        "receiver": notification.receiver,
        "notification_id": notification.id,
        "alertname": ",".join(list(dict.fromkeys(a.name for a in alerts))[:FINGERPRINTS_LOGGED]),
        "fingerprint": ",".join(a.fingerprint for a in alerts[:FINGERPRINTS_LOGGED]),
        "alerts": len(alerts),
        "outcome": outcome,
        "reason": reason,
        "latency_ms": round(max(0.0, held) * 1000, 1),
    }


def configure(fmt: str = "console", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries may log request URLs (which carry secrets) at DEBUG; keep them quiet.
    for noisy in ("slack_sdk", "pagerduty", "httpx", "httpx2", "httpcore", "aiosmtplib", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
