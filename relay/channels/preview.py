"""What a receiver would send for a notification, as text: `relay templates render` and the golden files.

The output is the provider calls relay makes, each after a `#` line naming it:
Slack JSON bodies, PagerDuty events, the email as MIME text. Secrets (webhook
URL, token, routing key, SMTP password) are never part of it. Thread references
that only exist at delivery time (a Slack `ts`) are shown as placeholders.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from relay.alerts import Notification, WebhookMessage, group_status
from relay.alerts.fingerprint import fingerprint
from relay.channels.digest import build_digest
from relay.channels.discord import requests as discord_requests
from relay.channels.email import build_message as email_message
from relay.channels.mail import domain_of, message_id
from relay.channels.pagerduty import build_events
from relay.channels.slack.calls import Call, SlackCalls
from relay.channels.slack.summary import AssumedStorms
from relay.channels.slack.threads import Anchor, AssumedBook, narrowed
from relay.channels.teams import build_message as teams_message
from relay.channels.telegram import requests as telegram_requests
from relay.channels.webhook import build_request as webhook_request
from relay.channels.webhook import is_json
from relay.config.receivers import ReceiverConfig
from relay.errors import DeliveryError
from relay.storms.fold import storm_lane, storm_of, summary_group
from relay.templating import Templates
from relay.times import GO_ZERO_TIME, rfc3339

THREAD_TS = "<ts of the message that announced these alerts>"
THREAD_CHANNEL = "<channel of that message>"
SUMMARY_TS = "<ts of the storm's summary message>"
SUMMARY_CHANNEL = "<channel of the storm's summary message>"


def synthetic_group(labels: Mapping[str, str], annotations: Mapping[str, str], now: datetime) -> WebhookMessage:
    """A one-alert webhook body from labels given on the command line."""
    all_labels = {"alertname": "TemplatePreview", **labels}
    alert = {"status": "firing", "labels": all_labels, "annotations": dict(annotations), "startsAt": rfc3339(now),
             "endsAt": GO_ZERO_TIME, "generatorURL": "", "fingerprint": fingerprint(all_labels)}
    return WebhookMessage.model_validate({
        "version": "4", "groupKey": f'{{}}:{{alertname="{all_labels["alertname"]}"}}', "status": "firing",
        "receiver": "relay", "alerts": [alert], "groupLabels": {"alertname": all_labels["alertname"]},
        "commonLabels": all_labels, "commonAnnotations": dict(annotations), "externalURL": "",
    })


def resolved(group: WebhookMessage, now: datetime) -> WebhookMessage:
    """The same group with every alert resolved (now, unless it already had an end)."""
    alerts = [a if a.status == "resolved" else a.model_copy(update={"status": "resolved", "endsAt": rfc3339(now)})
              for a in group.alerts]
    return group.model_copy(update={"alerts": alerts, "status": group_status(alerts)})


def as_notification(receiver: ReceiverConfig, group: WebhookMessage, now: datetime) -> Notification:
    return Notification(id=0, receiver=receiver.name, integration=receiver.integration,
                        lane=f"{receiver.name}:{group.groupKey}", group=group, received_at=now)


def storm_summary(receiver: ReceiverConfig, group: WebhookMessage, count: int, now: datetime) -> Notification:
    """The first summary of a storm of `count` alerts like the group's first (each its own group, told apart by an
    `instance` label), as relay.storms.stage would fold them for this receiver."""
    base = group.alerts[0]
    groups = []
    for i in range(count):
        labels = {**base.labels, "instance": f"{base.labels.get('instance', 'preview')}-{i + 1}"}
        alert = base.model_copy(update={"labels": labels, "fingerprint": fingerprint(labels)})
        groups.append(group.model_copy(update={"alerts": [alert], "status": alert.status}))
    folded = summary_group(1, groups)
    return Notification(id=1, receiver=receiver.name, integration=receiver.integration,
                        lane=storm_lane(receiver.name, 1), group=folded, received_at=now)


def template_problems(receivers: Mapping[str, ReceiverConfig], templates: Templates) -> list[str]:
    """Render every receiver's templates for sample alerts, firing and resolved; what failed, per receiver."""
    now = datetime.now(UTC)
    sample = synthetic_group({"severity": "critical", "namespace": "default", "pod": "app-0", "instance": "10.0.0.1"},
                             {"summary": "Sample alert from relay routes check", "description": "Sample.",
                              "runbook_url": "https://runbooks.example/sample"}, now)
    problems = []
    for name, receiver in sorted(receivers.items()):
        for group in (sample, resolved(sample, now)):
            try:
                render(receiver, as_notification(receiver, group, now), templates, now)
            except DeliveryError as exc:
                problems.append(f"receiver {name} ({group.status}): {exc}")
                break
    return problems


def render(receiver: ReceiverConfig, notification: Notification, templates: Templates,
           now: datetime | None = None) -> str:
    """Every provider call the receiver would make for this notification, as text."""
    now = now or datetime.now(UTC)
    if receiver.slack is not None:
        return _slack(receiver, notification, templates, now)
    if receiver.email is not None:
        return _email(receiver, notification, templates, now)
    if receiver.webhook is not None:
        return _webhook(receiver, notification, templates, now)
    if receiver.discord is not None:
        return _discord(receiver, notification, templates, now)
    if receiver.telegram is not None:
        return _telegram(receiver, notification, templates, now)
    if receiver.teams is not None:
        return ("# POST to the Teams Workflows URL (a secret: not shown): a new card (Workflows cannot edit one)\n"
                + _json(teams_message(notification, templates, receiver, now)))
    return _pagerduty(receiver, notification, templates, now)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2) + "\n"


_SLACK_SHOWN = {
    "webhook": "POST to the incoming webhook (its URL is a secret: not shown)",
    "update": "chat.update of the message that announced the resolved alerts (assumed: relay knows it, and it showed "
              "just these alerts)",
    "reply": "chat.postMessage, a reply in that message's thread",
    "announce": "chat.postMessage of the firing alerts (assumed new: no earlier message known; its ts is remembered "
                "for the resolve)",
    "summary": "chat.postMessage of the storm's summary (its first; later ones update it in place with chat.update)",
    "detail": "chat.postMessage, a reply in the summary's thread listing what this summary folded",
}


def _slack(receiver: ReceiverConfig, notification: Notification, templates: Templates, now: datetime) -> str:
    """The calls SlackChannel.send makes (the same code makes them); in bot-token mode assuming relay announced the
    resolved alerts and nothing else."""
    book = AssumedBook(Anchor(THREAD_CHANNEL, THREAD_TS))
    calls = SlackCalls(receiver, templates).requests(notification, book, now, AssumedStorms())
    return "".join(f"# {_SLACK_SHOWN.get(call.step, call.method)}\n" + _json(_placed(call)) for call in calls)


def _placed(call: Call) -> dict[str, Any]:
    """A storm's detail reply goes into the summary's thread, which is only known at delivery time."""
    return {**call.body, "channel": SUMMARY_CHANNEL, "thread_ts": SUMMARY_TS} if call.step == "detail" else call.body


def _email(receiver: ReceiverConfig, notification: Notification, templates: Templates, now: datetime) -> str:
    config = receiver.email
    assert config is not None
    where = f"SMTP via {config.smarthost or '(smarthost unset)'} to {', '.join(config.to)}"
    if storm_of(notification.lane) is not None:
        return f"# {where} (a storm's digest)\n{build_digest(notification, receiver, now=now).as_string()}"
    answered = [a for a in notification.alerts if a.status == "resolved"]
    replying_to: list[str] = []
    if answered and config.from_:  # as if this receiver had announced them in an earlier notification
        firing = [a.model_copy(update={"status": "firing", "endsAt": GO_ZERO_TIME}) for a in answered]
        replying_to = [message_id(narrowed(notification, firing), domain_of(config.from_))]
    message = email_message(notification, templates, receiver, replying_to=replying_to, now=now)
    return f"# {where}\n{message.as_string()}"


def _pagerduty(receiver: ReceiverConfig, notification: Notification, templates: Templates, now: datetime) -> str:
    events = build_events(notification, templates, receiver, now=now)
    shown = [{"routing_key": "<routing key: not shown>", **event} for event in events]
    return f"# POST {len(events)} event(s) to the Events API v2, one per alert\n" + _json(shown)


def _webhook(receiver: ReceiverConfig, notification: Notification, templates: Templates, now: datetime) -> str:
    outgoing = webhook_request(notification, templates, receiver, now)
    http = receiver.webhook.http_config if receiver.webhook is not None else None
    auth = " with basic auth" if http and http.basic_auth else " with an Authorization header" if http and (
        http.bearer_token or http.authorization) else ""
    head = f"# POST to the webhook URL (a secret: not shown){auth}, Content-Type: {outgoing.content_type}"
    if is_json(outgoing.content_type):
        return f"{head} (the JSON shown indented)\n" + _json(json.loads(outgoing.body))
    return f"{head}\n{outgoing.body}\n"


def _discord(receiver: ReceiverConfig, notification: Notification, templates: Templates, now: datetime) -> str:
    """The webhook calls DiscordChannel.send makes (the same code decides them), assuming relay knows the message
    that announced each resolved alert."""
    shown = {"post": "POST to the webhook URL (a secret: not shown) ?wait=true, a new message (its id is remembered "
                     "for the resolve)",
             "edit": "PATCH <webhook URL>/messages/<id of the message that announced these alerts>: the message "
                     "redrawn, these alerts resolved"}
    return "".join(f"# {shown[call.step]}\n" + _json(call.body)
                   for call in discord_requests(notification, templates, receiver, now))


def _telegram(receiver: ReceiverConfig, notification: Notification, templates: Templates, now: datetime) -> str:
    """The Bot API calls TelegramChannel.send makes (the same code decides them), assuming relay knows the message
    that announced each resolved alert; the text is also shown as it reads (HTML parsed)."""
    config = receiver.telegram
    assert config is not None
    shown = {"post": "sendMessage (its message_id is remembered for the resolve)",
             "edit": "editMessageText of the message that announced these alerts: redrawn, these alerts resolved"}
    out = []
    for call in telegram_requests(notification, templates, receiver, now):
        out.append(f"# POST {config.api_url.rstrip('/')}/bot<token: not shown>/{shown[call.step]}\n"
                   + _json(call.body))
    return "".join(out)


def readable_email(text: str) -> str:
    """An email preview as a reviewer reads it: the headers, then each part decoded (no quoted-printable, Korean
    as is, and no MIME boundaries, which are random: two renders of one message differ only there)."""
    where, _, mime = text.partition("\n")
    message = email.message_from_string(mime, policy=email.policy.default)
    lines = [where, *(f"{name}: {value}" for name, value in message.items() if name != "Content-Type")]
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        lines += ["", f"--- {part.get_content_type()} ({part.get_content_charset()}, "
                      f"{part['Content-Transfer-Encoding']} on the wire) ---",
                  payload.decode(part.get_content_charset() or "ascii").rstrip("\n")]
    return "\n".join(lines) + "\n"
