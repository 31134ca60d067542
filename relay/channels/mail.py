"""One relay email as the `email` package builds it: headers, ids, a text and an HTML part.

Below both the email channel (a notification's email) and the storm digest (relay.channels.digest), which
assemble their messages alike: the same Message-ID for every attempt of a notification, one References thread
per alert group, Auto-Submitted, and a boundary derived from the content, so one notification is always the same
bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from relay.alerts import Notification
from relay.config.receivers import EmailConfig, ReceiverConfig
from relay.errors import PermanentDeliveryError, Reason
from relay.templating.escape import cut

SUBJECT_LIMIT = 250


def sender_domain(config: EmailConfig) -> str:
    """The domain of the From address, which Message-IDs and thread ids end in; a receiver without a From address
    cannot send (a permanent `unconfigured`)."""
    if not config.from_:
        raise PermanentDeliveryError(Reason.UNCONFIGURED, "email.from (or global.smtp_from) is not set")
    return domain_of(config.from_)


def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "relay.invalid"


def message_id(notification: Notification, domain: str) -> str:
    """One Message-ID per notification, the same on every attempt, so a retried email is recognised as a copy."""
    keys = ",".join(f"{a.fingerprint}@{a.startsAt}:{a.status}" for a in notification.alerts)
    seed = f"{notification.receiver}\n{notification.id}\n{notification.received_at.isoformat()}\n{keys}"
    return f"<relay.{hashlib.sha256(seed.encode()).hexdigest()[:32]}@{domain}>"


def assemble_email(notification: Notification, receiver: ReceiverConfig, subject: str, text: str, html: str,
                   domain: str, replying_to: Sequence[str], now: datetime) -> EmailMessage:
    config = receiver.email
    assert config is not None and config.from_ is not None
    group = hashlib.sha256(f"{receiver.name}\n{notification.group.groupKey}".encode()).hexdigest()[:32]
    message = EmailMessage()
    message["Subject"] = cut(subject, SUBJECT_LIMIT)
    message["From"] = config.from_
    message["To"] = ", ".join(config.to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(notification, domain)
    if replying_to:  # RFC 5322 3.6.4: the messages this one answers, so mail clients thread it under them
        message["In-Reply-To"] = " ".join(replying_to)
    message["References"] = " ".join([f"<{group}@{domain}>", *replying_to])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to alerts
    message.set_content(text + "\n", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html + "\n", subtype="html", charset="utf-8", cte="quoted-printable")
    # A boundary derived from the content (not random) makes the same notification render to the same bytes.
    message.set_boundary("=_relay_" + hashlib.sha256(f"{text}\n{html}".encode()).hexdigest()[:24])
    return message
