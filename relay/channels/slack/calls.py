"""What Slack is asked to do for a notification, as data: `Call`s decided by SlackCalls (post, update, reply in a
thread, a storm summary), and how Slack's answers are classified. SlackChannel (relay.channels.slack.channel) makes
the calls; `relay templates render` records them instead (SlackCalls.requests), so the preview cannot drift.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NoReturn

from relay.alerts import Alert, Notification
from relay.channels.base import parse_retry_after
from relay.channels.slack.buttons import MessageState, controls
from relay.channels.slack.message import build_message
from relay.channels.slack.summary import StormBook, anchor_of, detail_message, summary_message
from relay.channels.slack.threads import Anchor, Book, narrowed
from relay.config.receivers import ReceiverConfig, SlackConfig
from relay.errors import DeliveryUnfinished, PermanentDeliveryError, Reason, TransientDeliveryError, http_reason
from relay.store.records import StormView
from relay.storms import summary
from relay.storms.fold import redraws, storm_of
from relay.templating import Templates

log = logging.getLogger(__name__)

TIMEOUT = 10.0
PREPARED_KEEP = 64  # messages rendered ahead and not yet sent, per Slack receiver (SlackChannel.prepare)

# Slack's own error names (webhook bodies, Web API `error` fields) go into the detail, mapped onto relay's closed
# set of metric reasons; a name Slack adds later is a client error until it is listed here.
_SLACK_ERROR = re.compile(r"[a-z][a-z_]{1,48}")
_SLACK_REASONS: dict[str, Reason] = {
    **dict.fromkeys(("rate_limited", "ratelimited"), Reason.RATE_LIMITED),
    **dict.fromkeys(("internal_error", "fatal_error", "service_unavailable"), Reason.SERVER_ERROR),
    "request_timeout": Reason.TIMEOUT,
    **dict.fromkeys(("invalid_token", "invalid_auth", "not_authed", "account_inactive", "token_revoked",
                     "token_expired", "no_permission", "missing_scope", "not_allowed_token_type", "ekm_access_denied",
                     "action_prohibited", "restricted_action"), Reason.AUTH),
    **dict.fromkeys(("channel_not_found", "channel_is_archived", "is_archived", "no_service", "no_service_id",
                     "no_team", "team_disabled", "not_in_channel", "thread_not_found", "message_not_found",
                     "user_not_found"), Reason.NOT_FOUND),
    **dict.fromkeys(("msg_too_long", "too_many_attachments", "msg_blocks_too_long"), Reason.PAYLOAD_TOO_LARGE),
}
_TRANSIENT = {Reason.RATE_LIMITED, Reason.SERVER_ERROR, Reason.TIMEOUT}
# chat.update answers meaning the original message cannot be changed any more: reply anyway, do not fail.
GONE = {"message_not_found", "cant_update_message", "edit_window_closed", "channel_not_found", "is_archived",
         "not_in_channel", "thread_not_found"}
_POST_ONLY = ("unfurl_links", "unfurl_media", "username", "icon_emoji")


def classify(status: int, error: str, retry_after: str | None) -> NoReturn:
    """Raise the DeliveryError for a Slack answer that is not a success; `error` is Slack's error name, kept as the
    error's `code` and in its detail."""
    name = error.strip() if _SLACK_ERROR.fullmatch(error.strip()) else ""
    detail = f"HTTP {status}" + (f" {name}" if name else "")
    if status == 429 or status >= 500 or status == 408:
        reason = http_reason(status)
    else:
        reason = _SLACK_REASONS.get(name) or (http_reason(status) if status >= 300 else Reason.CLIENT_ERROR)
    if reason in _TRANSIENT:
        hint = parse_retry_after(retry_after) if reason is Reason.RATE_LIMITED else None
        raise TransientDeliveryError(reason, detail, hint, code=name)
    raise PermanentDeliveryError(reason, detail, code=name)


def post_call(channel: str | None, message: dict[str, Any], thread: Anchor | None = None) -> dict[str, Any]:
    """The chat.postMessage arguments: into the channel, or as a reply in a thread."""
    where = {"channel": thread.channel, "thread_ts": thread.ts} if thread is not None else {"channel": channel}
    return {**where, "unfurl_links": False, "unfurl_media": False, **message}


def reminder_call(anchor: Anchor, message: dict[str, Any]) -> dict[str, Any]:
    """A reminder is a reply in the alert's thread that is also shown in the channel."""
    return {**post_call(None, message, anchor), "reply_broadcast": True}


def update_call(anchor: Anchor, message: dict[str, Any]) -> dict[str, Any]:
    """The chat.update arguments (an update cannot change who posted the message)."""
    return {"channel": anchor.channel, "ts": anchor.ts, **{k: v for k, v in message.items() if k not in _POST_ONLY}}


# webhook: the incoming webhook; post: chat.postMessage without threads; announce / remind / update / reply: the
# bot-token steps of a thread plan (a new message, a reminder in a thread, the announcement redrawn, a thread reply);
# summary / resummary / detail: a storm's summary posted, updated in place, and its details in its thread.
Step = Literal["webhook", "post", "announce", "remind", "update", "reply", "summary", "resummary", "detail"]


@dataclass(frozen=True)
class Call:
    """One Slack API call as data: which step of a send it is and its arguments. No secret is part of it: the
    webhook URL and the token stay with the channel that makes the call."""

    step: Step
    body: dict[str, Any]

    @property
    def method(self) -> str:
        """The Web API method, or `webhook` for a POST to the incoming webhook."""
        return {"webhook": "webhook", "update": "chat.update", "resummary": "chat.update"}.get(self.step,
                                                                                           "chat.postMessage")


# How a call is made: the Web API's answer (what chat.postMessage says about the new message) comes back.
Transport = Callable[[Call], Awaitable[Mapping[str, Any]]]


class SlackCalls:
    """The calls a Slack receiver makes for a notification, in order, whatever makes them: SlackChannel.send, or
    requests() for `relay templates render` (httpx's build_request/send split)."""

    stepwise = False  # a preview makes every call at once; SlackChannel ends an attempt after each storm step

    def __init__(self, receiver: ReceiverConfig, templates: Templates) -> None:
        if receiver.slack is None:
            raise ValueError(f"receiver {receiver.name!r} is not a slack receiver")
        self.receiver = receiver
        self.config: SlackConfig = receiver.slack
        self.templates = templates

    @property
    def webhook(self) -> bool:
        """An incoming webhook wins over a token."""
        return bool(self.config.webhook_url and self.config.webhook_url.get_secret_value().strip())

    def render(self, notification: Notification, now: datetime | None = None, mention: bool = True,
               buttons: bool = False, state: MessageState | None = None, version: str | None = None
               ) -> dict[str, Any]:
        """The message; `buttons` adds the actions' notes and buttons (relay.channels.slack.buttons) to a firing
        message of a receiver that has them, as rendering `version` (by default this notification's)."""
        shown: list[dict[str, Any]] = []
        if buttons and self.config.actions is not None and notification.status == "firing":
            shown = controls(self.config.actions, self.receiver.name, version or f"n{notification.id}", state,
                             now=now.timestamp() if now else None)
        return build_message(notification, self.templates, self.receiver, now=now, mention=mention, controls=shown)

    def requests(self, notification: Notification, book: Book | None = None,
                 now: datetime | None = None, storms: StormBook | None = None) -> list[Call]:
        """Every call send() would make, as data, with `book`'s thread plan; the book must answer without waiting for
        I/O (preview's assumed threads), and every call is taken to succeed (a new message's channel and ts unknown)."""
        made: list[Call] = []

        async def record(call: Call) -> Mapping[str, Any]:
            made.append(call)
            return {"channel": "", "ts": ""}

        # With neither secret set (`routes diff` of a file whose ${VAR}s are unset here) it shows the incoming webhook.
        token = self.config.token.get_secret_value().strip() if self.config.token else ""
        steps = self.make_calls(notification, book, record, now, webhook=self.webhook or not token, storms=storms)
        try:
            steps.send(None)
        except StopIteration:
            return made
        steps.close()
        raise RuntimeError("requests() needs a thread book that answers without waiting")

    async def make_calls(self, notification: Notification, book: Book | None, transport: Transport,
                         now: datetime | None = None, *, webhook: bool | None = None,
                         storms: StormBook | None = None) -> None:
        """Make the calls through `transport`: the webhook (when configured, unless `webhook` says), else one
        chat.postMessage without a thread book, else the steps of the book's thread plan. A storm's summary is one
        message per summary through the webhook, or (with a token and both books) one per storm, updated."""
        webhook = self.webhook if webhook is None else webhook
        if storm_of(notification.lane) is not None:
            await self._summarise(notification, None if webhook else book, None if webhook else storms, transport,
                                  webhook)
        elif webhook:
            channel = {"channel": self.config.channel} if self.config.channel else {}
            await transport(Call("webhook", {**self._webhook_message(notification, now), **channel}))
        elif book is None:
            await transport(Call("post", post_call(self.config.channel, self.render(notification, now))))
        else:
            await self._threaded(notification, book, transport, now)

    def _webhook_message(self, notification: Notification, now: datetime | None) -> dict[str, Any]:
        """The incoming webhook's message (SlackChannel may have it prepared already)."""
        return self.render(notification, now)

    async def _threaded(self, notification: Notification, book: Book, transport: Transport,
                        now: datetime | None) -> None:
        """Answer the threads of resolved alerts, remind still-firing ones in theirs, then announce what is new."""
        plan = await book.plan(notification)
        for anchor, alerts in plan.resolves:
            await self._resolve_in_thread(notification, book, transport, anchor, alerts, now)
        # The mention pings once per notification: on the new message if there is one, else the first reminder.
        for i, (anchor, alerts) in enumerate(plan.reminders):  # a reply also shown in the channel
            reminder = narrowed(notification, alerts)
            await transport(Call("remind", reminder_call(anchor, self.render(reminder, now,
                                                                             mention=not plan.new and i == 0))))
            await book.reminded(anchor, reminder)
        if plan.new:
            fresh = narrowed(notification, plan.new)
            answer = await transport(Call("announce", post_call(self.config.channel,
                                                                self.render(fresh, now, buttons=True))))
            await book.remember(Anchor(str(answer["channel"]), str(answer["ts"])), fresh)

    async def _summarise(self, notification: Notification, book: Book | None, storms: StormBook | None,
                         transport: Transport, webhook: bool) -> None:
        """A storm's summary: by webhook (or without books) a message of its own alerts; with a token, the storm's
        one message posted or updated to show the storm so far, then this summary's alerts in its thread (the firing
        ones' resolves will answer there). Each is one Slack call: with `stepwise`, the first call ends the attempt
        (DeliveryUnfinished) and the next attempt, with a rate-limit token of its own, replies in the thread."""
        own = summary.of(notification)
        if redraws(notification.group) and (webhook or book is None or storms is None):
            return  # only a message updated in place has anything to redraw (the receiver changed meanwhile)
        if webhook:
            channel = {"channel": self.config.channel} if self.config.channel else {}
            await transport(Call("webhook", {**summary_message(own), **channel}))
            return
        view = await storms.view(notification) if storms is not None else None
        if view is None or book is None or storms is None:  # no store (or the storm forgotten): a message of its own
            await transport(Call("post", post_call(self.config.channel, summary_message(own))))
            return
        anchor, shown = anchor_of(view.storm.ref)
        if shown != notification.id:  # the storm's message does not show this summary yet (an earlier attempt's)
            anchor = await self._show_storm(notification, view, anchor, storms, transport)
            if redraws(notification.group):  # the storm is over: its message says so, nothing new to detail
                return
            if self.stepwise:
                raise DeliveryUnfinished(f"storm summary {notification.id} shown; its details follow in its thread")
        assert anchor is not None
        await transport(Call("detail", post_call(None, detail_message(own), anchor)))
        await book.folded(anchor, [a for a in notification.alerts if a.status == "firing"], notification.id)

    async def _show_storm(self, notification: Notification, view: StormView, anchor: Anchor | None,
                          storms: StormBook, transport: Transport) -> Anchor:
        """Update the storm's message to show it so far (post it if there is none, or it is gone); remember it."""
        storm = summary.of(notification, view.alerts, ended=view.storm.ended_at is not None)
        if anchor is not None:
            try:
                await transport(Call("resummary", update_call(anchor, summary_message(storm))))
            except PermanentDeliveryError as exc:
                if exc.code not in GONE:
                    raise
                log.warning("storm summary %s can no longer be updated (%s); posting a new one", anchor.ts, exc.code)
                anchor = None
        if anchor is None:
            answer = await transport(Call("summary", post_call(self.config.channel, summary_message(storm))))
            anchor = Anchor(str(answer["channel"]), str(answer["ts"]), summary=True)
        await storms.posted(storm.storm_id, anchor, notification.id)
        return anchor

    async def _resolve_in_thread(self, notification: Notification, book: Book, transport: Transport, anchor: Anchor,
                                 alerts: list[Alert], now: datetime | None) -> None:
        """Update the announcing message first (repeatable), then reply in its thread (not repeated once done); a
        storm's summary is not redrawn (it counts the storm), the resolve only answers in its thread."""
        original, completed = await book.original(anchor, notification, alerts)
        resolved = narrowed(notification, completed)
        if anchor.summary:
            await transport(Call("reply", post_call(None, self.render(resolved, now), anchor)))
            await book.mark_resolved(anchor, alerts)
            return
        try:
            redrawn = self.render(original or resolved, now, buttons=True)  # still firing in part: buttons stay
            await transport(Call("update", update_call(anchor, redrawn)))
        except PermanentDeliveryError as exc:
            if exc.code not in GONE:
                raise
            log.warning("slack message %s can no longer be updated (%s); replying only", anchor.ts, exc.code)
        else:
            if original is not None:
                await book.save_original(anchor, original)
        await transport(Call("reply", post_call(None, self.render(resolved, now), anchor)))
        await book.mark_resolved(anchor, alerts)
