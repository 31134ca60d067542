"""Slack: incoming webhooks now, bot-token `chat.postMessage` for threading later.

slack_sdk's own retries are switched off (the dispatcher retries with a persisted
schedule) and it gets a logger that never reaches DEBUG, because its debug lines
print the webhook URL, which is the secret.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, NoReturn

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from relay.alerts import Notification
from relay.channels.base import parse_retry_after, secret_digest
from relay.errors import PermanentDeliveryError, TransientDeliveryError
from relay.receivers import ReceiverConfig, SlackConfig
from relay.templating import Templates, context
from relay.threads import Threads

log = logging.getLogger(__name__)

# slack_sdk checks `logger.level <= DEBUG` itself (NOTSET counts), so the level must be set explicitly.
_sdk_log = logging.getLogger(f"{__name__}.sdk")
_sdk_log.setLevel(logging.INFO)

TIMEOUT = 10.0
# Slack rejects a section block whose text exceeds 3000 characters.
SECTION_LIMIT = 3000
FALLBACK_LIMIT = 4000

COLOURS = {"critical": "#D50200", "warning": "#FF9900", "resolved": "#2EB67D"}
OTHER_COLOUR = "#9E9E9E"
_SEVERITY_RANK = {"critical": 0, "warning": 1}

# Slack's own error names (webhook bodies, Web API `error` fields) double as metric reasons.
_SLACK_ERROR = re.compile(r"[a-z][a-z_]{1,48}")
_RETRYABLE_ERRORS = {"rate_limited", "ratelimited", "internal_error", "fatal_error", "service_unavailable",
                     "request_timeout"}


def cut(text: str, limit: int) -> str:
    """Shorten text to a provider limit, saying that it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def colour(notification: Notification) -> str:
    """Green when resolved, else the colour of the most severe firing alert."""
    if notification.status == "resolved":
        return COLOURS["resolved"]
    severities = [a.labels.get("severity", "") for a in notification.alerts if a.status == "firing"]
    worst = min(severities, key=lambda s: _SEVERITY_RANK.get(s, len(_SEVERITY_RANK)), default="")
    return COLOURS.get(worst, OTHER_COLOUR)


def build_message(notification: Notification, templates: Templates, receiver: ReceiverConfig) -> dict[str, Any]:
    """The Slack message: a header block, the body in a coloured attachment, and a plain-text fallback."""
    config = receiver.slack
    assert config is not None
    ctx = context(notification)
    title = templates.render("slack", "title", receiver.templates, ctx)
    body = templates.render("slack", "text", receiver.templates, ctx)
    if config.mention and notification.status == "firing":
        title = f"{config.mention} {title}"
    message: dict[str, Any] = {
        "text": cut(f"{title}\n{body}".strip(), FALLBACK_LIMIT),
        "blocks": [_section(title or notification.status)],
    }
    if body:
        message["attachments"] = [{"color": colour(notification), "fallback": cut(title, 300),
                                   "blocks": [_section(body)]}]
    for key in ("channel", "username", "icon_emoji"):
        value = getattr(config, key)
        if value:
            message[key] = value
    return message


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}}


def classify(status: int, error: str, retry_after: str | None) -> NoReturn:
    """Raise the DeliveryError for a Slack answer that is not a success; `error` is Slack's error name."""
    name = error.strip() if _SLACK_ERROR.fullmatch(error.strip()) else ""
    detail = f"HTTP {status}" + (f" {name}" if name else "")
    if status == 429 or name in ("rate_limited", "ratelimited"):
        raise TransientDeliveryError("rate_limited", detail, parse_retry_after(retry_after))
    if status >= 500 or status == 408:
        raise TransientDeliveryError(f"http_{status}", detail)
    if name in _RETRYABLE_ERRORS:
        raise TransientDeliveryError(name, detail)
    raise PermanentDeliveryError(name or (f"http_{status}" if status >= 300 else "api_error"), detail)


def network_error(exc: BaseException) -> TransientDeliveryError | PermanentDeliveryError:
    """Translate an aiohttp failure; its text may hold the URL, so only the type is kept."""
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError("timeout", type(exc).__name__)
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentDeliveryError("invalid_url", "the configured Slack URL is not a valid URL")
    return TransientDeliveryError("connection_error", type(exc).__name__)


class SlackChannel:
    """Posts a notification as one Slack message, by incoming webhook or by bot token."""

    integration = "slack"

    def __init__(self, receiver: ReceiverConfig, templates: Templates, session: aiohttp.ClientSession,
                 *, timeout: float = TIMEOUT) -> None:
        if receiver.slack is None:
            raise ValueError(f"receiver {receiver.name!r} is not a slack receiver")
        self.receiver = receiver
        self.config: SlackConfig = receiver.slack
        self.templates = templates
        self.session = session
        self.timeout = timeout

    @property
    def destination(self) -> str:
        config = self.config
        if config.webhook_url is not None and config.webhook_url.get_secret_value().strip():
            return "slack:" + secret_digest(config.webhook_url.get_secret_value())
        token = config.token.get_secret_value() if config.token is not None else ""
        return "slack:" + secret_digest(f"{token}:{config.channel}")

    async def send(self, notification: Notification, threads: Threads | None = None) -> None:
        message = build_message(notification, self.templates, self.receiver)
        webhook_url = self.config.webhook_url.get_secret_value().strip() if self.config.webhook_url else ""
        try:
            async with asyncio.timeout(self.timeout):
                if webhook_url:
                    await self._post_webhook(webhook_url, message)
                else:
                    await self._post_message(message)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise network_error(exc) from None
        log.debug("slack message delivered", extra={"receiver": self.receiver.name, "notification": notification.id})

    async def _post_webhook(self, url: str, message: dict[str, Any]) -> None:
        client = AsyncWebhookClient(url, session=self.session, retry_handlers=[], logger=_sdk_log)
        client.proxy = None  # proxies are the session's business (trust_env honours NO_PROXY; slack_sdk does not)
        response = await client.send_dict(message)
        if 200 <= response.status_code < 300:
            return
        classify(response.status_code, response.body or "", response.headers.get("Retry-After"))

    async def _post_message(self, message: dict[str, Any]) -> None:
        token = self.config.token.get_secret_value() if self.config.token else ""
        client = AsyncWebClient(token=token, base_url=self.config.api_url, session=self.session,
                                retry_handlers=[], logger=_sdk_log)
        client.proxy = None
        try:
            await client.chat_postMessage(**{**message, "channel": self.config.channel})
            return
        except SlackApiError as exc:
            response = exc.response
        error = response.get("error") if isinstance(response.data, dict) else None
        classify(response.status_code, error if isinstance(error, str) else "", response.headers.get("Retry-After"))

    async def close(self) -> None:
        """The aiohttp session belongs to the caller; nothing else is held open."""
