"""Slack: incoming webhooks post every notification as a new message; a bot token also threads.

In bot-token mode (`token` + `channel`, Web API through slack_sdk) relay
remembers where each firing alert was announced (relay.channels.threads). When the alert
resolves, relay updates that message to show it resolved and replies in its
thread, also after a restart; a re-notification of a still-firing alert goes
into the same thread. See relay.channels.slack.threads for the bookkeeping.

SlackCalls decides the calls (as data: `Call`) and SlackChannel makes them; `relay
templates render` runs the same SlackCalls with assumed threads and records the
calls instead (SlackCalls.requests), so the preview cannot drift from send().

An incoming webhook is one JSON POST through relay.channels.http, like the other
webhook-style channels; slack_sdk makes the Web API calls. Its own retries are
switched off (the dispatcher retries with a persisted schedule) and it gets a
logger that never reaches DEBUG, because its debug lines print what it was
called with.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from relay.actions.model import Action, action_of
from relay.alerts import Notification, WebhookMessage
from relay.channels import http
from relay.channels.base import secret_digest
from relay.channels.http import NETWORK_ERRORS, network_error
from relay.channels.slack.calls import GONE, PREPARED_KEEP, TIMEOUT, Call, SlackCalls, classify, post_call, update_call
from relay.channels.slack.summary import StoreStorms
from relay.channels.slack.threads import Anchor, ThreadBook
from relay.channels.threads import Threads
from relay.config.receivers import ReceiverConfig, SlackActions
from relay.errors import PermanentDeliveryError, Reason
from relay.storms.fold import storm_of
from relay.templating import Templates

log = logging.getLogger(__name__)

# slack_sdk checks `logger.level <= DEBUG` itself (NOTSET counts), so the level must be set explicitly.
_sdk_log = logging.getLogger(f"{__name__}.sdk")
_sdk_log.setLevel(logging.INFO)

class PerformAction(Protocol):
    """What carries out an action row (a click on one of this channel's messages) through the channel: relay.actions
    .perform, given by whoever builds the channels (relay.services), so the channel never imports the actions."""

    async def __call__(self, api: SlackChannel, config: SlackActions, threads: Threads, notification: Notification,
                       action: Action) -> None: ...


class SlackChannel(SlackCalls):
    """Posts a notification as Slack messages, by incoming webhook or by bot token (with threads)."""

    integration = "slack"
    stepwise = True

    def __init__(self, receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession,
                 *, timeout: float = TIMEOUT, perform: PerformAction | None = None) -> None:
        super().__init__(receiver, templates)
        self.session = session
        self.timeout = timeout
        self.perform = perform
        # Messages rendered while their notification's commit was on its way to disk (prepare), by the id of the
        # group's first alert; each with the group it was rendered from. The oldest go past PREPARED_KEEP (one whose
        # notification was deduplicated away, or not handed off, is never asked for).
        self._prepared: dict[int, tuple[WebhookMessage, dict[str, Any]]] = {}

    def prepare(self, notification: Notification) -> None:
        """Render an incoming webhook's message ahead (relay.channels.base.Prepares); bot-token sends, storm summaries
        and actions are not prepared."""
        if (not self.webhook or not notification.alerts or notification.escalation is not None
                or storm_of(notification.lane) is not None or action_of(notification) is not None):
            return
        self._prepared[id(notification.alerts[0])] = (notification.group, self.render(notification))
        while len(self._prepared) > PREPARED_KEEP:
            del self._prepared[next(iter(self._prepared))]

    def _webhook_message(self, notification: Notification, now: datetime | None) -> dict[str, Any]:
        """The prepared message if it was rendered from this notification's alerts, all of them (dedup may have
        kept fewer: then it is rendered now, as it is for a notification claimed from the outbox)."""
        found = self._prepared.pop(id(notification.alerts[0]), None) if notification.alerts and now is None else None
        if found is not None:
            group, message = found
            if (notification.escalation is None and group.status == notification.status
                    and len(group.alerts) == len(notification.alerts)
                    and all(a is b for a, b in zip(group.alerts, notification.alerts, strict=True))):
                return message
        return self.render(notification, now)

    @functools.cached_property
    def destination(self) -> str:
        config = self.config
        if config.webhook_url is not None and config.webhook_url.get_secret_value().strip():
            return "slack:" + secret_digest(config.webhook_url.get_secret_value())
        token = config.token.get_secret_value() if config.token is not None else ""
        return "slack:" + secret_digest(f"{token}:{config.channel}")

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        book = ThreadBook(threads) if threads is not None else None
        storms = StoreStorms(threads.store) if threads is not None else None
        try:
            action = action_of(notification)
            if action is not None:
                await self._perform(notification, action, threads)
            else:
                await self.make_calls(notification, book, self._make, storms=storms)
        except NETWORK_ERRORS as exc:
            raise network_error(exc, "Slack URL", self.timeout) from None
        log.debug("slack message delivered", extra={"receiver": self.receiver.name,
                                                    "notification_id": notification.id})

    async def _perform(self, notification: Notification, action: Action, threads: Threads | None) -> None:
        """An action row (relay.actions.model) for this receiver's message: see relay.actions.perform."""
        if self.config.actions is None or threads is None:
            raise PermanentDeliveryError(Reason.CONFIG, f"receiver {self.receiver.name!r} has no slack.actions")
        if self.perform is None:
            raise PermanentDeliveryError(Reason.CONFIG, f"receiver {self.receiver.name!r}: this relay was built "
                                         "without Slack actions")
        await self.perform(self, self.config.actions, threads, notification, action)

    async def update(self, anchor: Anchor, message: dict[str, Any]) -> None:
        """chat.update of a message relay posted; a message that can no longer change is left as it is."""
        try:
            await self._call(lambda client: client.chat_update(**update_call(anchor, message)))
        except PermanentDeliveryError as exc:
            if exc.code not in GONE:
                raise
            log.warning("slack message %s can no longer be updated (%s)", anchor.ts, exc.code)

    async def reply(self, anchor: Anchor, text: str) -> None:
        """A reply of relay's own text in the message's thread (it names a user: `<@U…>`, never alert text)."""
        body = post_call(None, {"text": text}, anchor)
        await self._call(lambda client: client.chat_postMessage(**body))

    async def usergroup_members(self, usergroup: str) -> list[str]:
        """The user IDs of a user group (usergroups.users.list; the bot token needs usergroups:read)."""
        response = await self._call(lambda client: client.usergroups_users_list(usergroup=usergroup))
        users = response.get("users")
        return [str(u) for u in users] if isinstance(users, list) else []

    async def _make(self, call: Call) -> Mapping[str, Any]:
        if call.step == "webhook":
            assert self.config.webhook_url is not None
            await self._post_webhook(self.config.webhook_url.get_secret_value().strip(), call.body)
            return {}
        if call.step in ("update", "resummary"):
            await self._call(lambda client: client.chat_update(**call.body))
            return {}
        response = await self._call(lambda client: client.chat_postMessage(**call.body))
        return {"channel": response["channel"], "ts": response["ts"]} if call.step in ("announce", "summary") else {}

    async def _call(self, method: Callable[[AsyncWebClient], Awaitable[AsyncSlackResponse]]) -> AsyncSlackResponse:
        token = self.config.token.get_secret_value() if self.config.token else ""
        client = AsyncWebClient(token=token, base_url=self.config.api_url.rstrip("/") + "/", session=self.session,
                                retry_handlers=[], logger=_sdk_log)
        client.proxy = None  # proxies are the session's business (trust_env honours NO_PROXY; slack_sdk does not)
        try:
            async with asyncio.timeout(self.timeout):
                return await method(client)
        except SlackApiError as exc:
            response = exc.response
        error = response.get("error") if isinstance(response.data, dict) else None
        classify(response.status_code, error if isinstance(error, str) else "", response.headers.get("Retry-After"))

    async def _post_webhook(self, url: str, message: dict[str, Any]) -> None:
        """One JSON POST to the incoming webhook through relay.channels.http (no redirects followed, the answer read
        up to its limit): the hot path of most Slack receivers. slack_sdk's AsyncWebhookClient built a client, its
        headers and a JSON body per send for the same request (issue 24: 1.2-1.4 ms until the server had it, the
        floor's aiohttp 1.0)."""
        reply = await http.call(self.session, "POST", url, http.dumps(message), timeout=self.timeout,
                                what="Slack URL")
        if not reply.ok:
            classify(reply.status, reply.text, reply.retry_after)

    async def close(self) -> None:
        """The aiohttp session belongs to the caller; nothing else is held open."""
