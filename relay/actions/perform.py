"""What an action row (relay.actions.model) does when the Slack channel delivers it: Alertmanager first, then the
message and its thread.

Each step's progress is remembered (a message reference `action:<id>`), so a retry after a crash or a failure
continues where the last attempt stopped: a silence already created is not created again, the message is not
updated twice, the thread gets one reply. Before creating a silence relay also asks Alertmanager for one it made
for this action (its comment names the action), in case the process died between Alertmanager's answer and the
store's write. What the message shows (silenced until when by whom, acknowledged by whom) is kept per message
(`slack-state:<channel>:<ts>`), with each alert's silence, for Unsilence and the next redraw.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from pydantic import ValidationError

from relay.actions.alertmanager import AlertmanagerClient, base_url, equal_matchers
from relay.actions.model import Action
from relay.alerts import Notification, WebhookMessage, alert_key
from relay.channels.base import guard_store
from relay.channels.slack.buttons import MessageState, clock, user
from relay.channels.slack.threads import Anchor
from relay.channels.threads import Threads
from relay.config.receivers import SlackActions
from relay.errors import PermanentDeliveryError
from relay.stages import escalation
from relay.store.records import Watch
from relay.templating.neutralise import visible

log = logging.getLogger(__name__)

COMMENT_LIMIT = 1000


class SlackApi(Protocol):
    """What performing needs of the Slack channel: render a message and make Web API calls."""

    session: aiohttp.ClientSession

    def render(self, notification: Notification, now: datetime | None = None, mention: bool = True,
               buttons: bool = False, state: MessageState | None = None, version: str | None = None
               ) -> dict[str, Any]: ...

    async def update(self, anchor: Anchor, message: dict[str, Any]) -> None: ...

    async def reply(self, anchor: Anchor, text: str) -> None: ...


def marker(notification_id: int) -> str:
    """What a silence's comment says so relay can find it again: the action that made it."""
    return f"(relay action {notification_id})"


def comment(action: Action, notification: Notification) -> str:
    """The silence's comment: who, from where, and a link to the message. No alert text: the matchers say which
    alert it is, and a label value in the comment would be one more place where hostile text is read."""
    link = action.permalink()
    text = f"Silenced from Slack by {visible(action.user_name) or action.user} {marker(notification.id)}"
    return (text + (f": {link}" if link else ""))[:COMMENT_LIMIT]


def created_by(action: Action) -> str:
    return f"{visible(action.user_name)[:80]} (Slack {action.user})" if action.user_name else f"Slack {action.user}"


async def perform(api: SlackApi, config: SlackActions, threads: Threads, notification: Notification,
                  action: Action) -> None:
    """The Slack channel's hook for an action row (relay.channels.slack.channel.PerformAction)."""
    await Performer(api, config, threads).run(notification, action)


class Performer:
    """Performs one action row for the Slack receiver whose message was clicked."""

    def __init__(self, api: SlackApi, config: SlackActions, threads: Threads) -> None:
        self.api = api
        self.config = config
        self.threads = threads

    async def _refs(self, *keys: str) -> Mapping[str, str]:
        return await guard_store(self.threads.store.find_refs(self.threads.receiver, list(keys)))

    async def _put(self, key: str, value: Any) -> None:
        await guard_store(self.threads.store.remember_refs(self.threads.receiver, [key], json.dumps(value)))

    async def run(self, notification: Notification, action: Action) -> None:
        progress_key = f"action:{notification.id}"
        refs = await self._refs(action.message_key, action.state_key, progress_key)
        progress: dict[str, Any] = _json(refs.get(progress_key)) or {}
        state = MessageState.from_json(_json(refs.get(action.state_key)))
        shown = _group(refs.get(action.message_key)) or notification.group
        if "state" not in progress:
            state, said = await self._act(notification, action, state, progress, progress_key, shown)
            progress.update(state=state.to_json(), said=said)
            await self._put(action.state_key, state.to_json())
            await self._put(progress_key, progress)
        state = MessageState.from_json(progress["state"])
        anchor = Anchor(action.channel, action.ts)
        if not progress.get("updated"):
            message = dataclasses.replace(notification, group=shown, integration="slack")
            redrawn = self.api.render(message, mention=False, buttons=True, state=state, version=f"a{notification.id}")
            try:
                await self.api.update(anchor, redrawn)
            except PermanentDeliveryError as exc:
                log.warning("slack message %s cannot be updated (%s); replying only", action.ts, exc.code or exc)
            progress["updated"] = True
            await self._put(progress_key, progress)
        if not progress.get("replied"):
            await self.api.reply(anchor, str(progress["said"]))
            progress["replied"] = True
            await self._put(progress_key, progress)

    async def _act(self, notification: Notification, action: Action, state: MessageState, progress: dict[str, Any],
                   progress_key: str, shown: WebhookMessage) -> tuple[MessageState, str]:
        """Do what the action asks of Alertmanager and say what came of it (the thread reply)."""
        who = user(action.user)
        now = time.time()
        if action.kind == "acknowledge":
            await guard_store(escalation.cancel(self.threads.store, action.escalations,
                                                "acknowledged"))
            state = dataclasses.replace(state, acknowledged_at=action.clicked_at, acknowledged_by=action.user)
            return state, f":eyes: {who} acknowledged this {clock(action.clicked_at, now)}"
        client = AlertmanagerClient(self.api.session, base_url(shown.externalURL, self.config.alertmanager),
                                    self.config.alertmanager)
        if action.kind == "unsilence":
            expired = 0
            for _key, silence_id in state.silences:
                expired += await client.expire_silence(silence_id)
                await guard_store(self.threads.store.unwatch_silence(self.threads.receiver, silence_id))
            state = dataclasses.replace(state, silenced_until=None, silenced_by="", silences=())
            return state, f":bell: {who} unsilenced this ({expired} silence(s) expired in Alertmanager)"
        assert action.until is not None
        made: dict[str, str] = dict(progress.get("silences") or {})
        for alert in notification.alerts:
            key = alert_key(alert)
            if key in made:
                continue
            mine = [s for s in await client.silences(alert.labels)
                    if marker(notification.id) in s.comment and s.state != "expired"]
            made[key] = mine[0].id if mine else await client.create_silence(
                equal_matchers(alert.labels), datetime.fromtimestamp(now, UTC),
                datetime.fromtimestamp(action.until, UTC), created_by(action), comment(action, notification))
            progress["silences"] = made
            await self._put(progress_key, progress)
            one = shown.model_copy(update={"alerts": [alert]})
            await guard_store(self.threads.store.watch_silence(
                Watch(self.threads.receiver, made[key], one.model_dump_json(), action.until), now))
        for key, older in state.silences:  # a Silence clicked on an older rendering: the new silence replaces it
            if made.get(key) != older:
                await client.expire_silence(older)
                await guard_store(self.threads.store.unwatch_silence(self.threads.receiver, older))
        await guard_store(escalation.cancel(self.threads.store, action.escalations,
                                            "silenced"))
        state = dataclasses.replace(state, silenced_until=action.until, silenced_by=action.user,
                                    silences=tuple(sorted(made.items())))
        ids = ", ".join(sorted(made.values()))
        return state, f":no_bell: {who} silenced this until {clock(action.until, now)} (Alertmanager silence {ids})"


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _group(record: str | None) -> WebhookMessage | None:
    found = _json(record)
    try:
        return WebhookMessage.model_validate(found["group"]) if isinstance(found, dict) else None
    except (KeyError, ValidationError):
        return None

