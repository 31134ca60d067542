"""Receivers: named destinations of one integration (slack, email, pagerduty, webhook, discord, telegram, teams).

Secrets arrive from the environment through `${VAR}` expansion; a receiver
whose secret is unset still loads, and its notifications become dead letters
with reason `unconfigured` until the secret is set and they are replayed.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from relay.config.durations import Duration, parse_duration
from relay.config.integrations import DiscordConfig, TeamsConfig, TelegramConfig, WebhookConfig

Integration = Literal["slack", "email", "pagerduty", "webhook", "discord", "telegram", "teams"]
INTEGRATIONS: tuple[Integration, ...] = ("slack", "email", "pagerduty", "webhook", "discord", "telegram", "teams")

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _set(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value().strip() != ""


class AlertmanagerApi(_Strict):
    """Where Slack actions reach Alertmanager's API v2, and its optional auth (a bearer token, or basic auth; both
    secrets). Calls go to `url`; without it, to the webhook's `externalURL` only when it is one of `external_urls`
    (relay.actions.alertmanager.base_url): a webhook must never choose where the credentials go or whose answers relay
    believes (a forged `[]` would resolve a page)."""

    url: str | None = None
    external_urls: list[str] = Field(default_factory=list)
    bearer_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None

    @property
    def configured(self) -> bool:
        """Whether calls can go anywhere: a url, or an allow-list for the webhook's externalURL."""
        return any(u.strip() for u in (self.url or "", *self.external_urls))

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerApi:
        if _set(self.bearer_token) and (self.username or _set(self.password)):
            raise ValueError("alertmanager takes bearer_token or username/password, not both")
        for given in [u for u in (self.url or "", *self.external_urls) if u.strip()]:
            if not re.fullmatch(r"https?://[^/?#@\s]+(/[^?#\s]*)?", given.strip()):
                raise ValueError(f"alertmanager URLs are http(s)://host[:port][/path] without user, query or "
                                 f"fragment, not {given!r}")
        return self


class SlackActions(_Strict):
    """Buttons on bot-token messages (relay.channels.slack.buttons): clicks are accepted from workspace `team_id`
    only, and, when either is given, only from `allowed_users` (Slack user IDs) or members of `allowed_usergroup`
    (a user group ID, read with the bot token's usergroups:read)."""

    team_id: str = Field(pattern=r"^[TE][A-Z0-9]{2,30}$")
    allowed_users: list[str] = Field(default_factory=list)
    allowed_usergroup: str | None = Field(default=None, pattern=r"^S[A-Z0-9]{2,30}$")
    silence_for: list[Duration] = Field(default_factory=lambda: [parse_duration(d) for d in ("1h", "4h", "24h")],
                                        min_length=1, max_length=5)
    alertmanager: AlertmanagerApi = Field(default_factory=AlertmanagerApi)

    @model_validator(mode="after")
    def _user_ids(self) -> SlackActions:
        for user in self.allowed_users:
            if not re.fullmatch(r"[UW][A-Z0-9]{2,30}", user):
                raise ValueError(f"allowed_users holds Slack user IDs (U0123ABCD), not {user!r}")
        if any(d.total_seconds() <= 0 for d in self.silence_for):
            raise ValueError("silence_for durations must be positive")
        if not self.alertmanager.configured:
            raise ValueError("actions need alertmanager.url (or alertmanager.external_urls, the Alertmanager URLs a "
                             "webhook's externalURL may name): relay never sends a silence, or its credentials, to a "
                             "host only the webhook named")
        return self


class SlackConfig(_Strict):
    """Incoming webhook (`webhook_url`) or bot token (`token` + `channel`, Web API at `api_url`); a bot token may
    carry `actions` (buttons)."""

    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = None
    api_url: str = DEFAULT_SLACK_API_URL
    username: str | None = None
    icon_emoji: str | None = None
    mention: str | None = None
    actions: SlackActions | None = None

    def missing_secret(self) -> str | None:
        if _set(self.webhook_url) or _set(self.token):
            return None
        return "webhook_url or token"

    @model_validator(mode="after")
    def _token_needs_channel(self) -> SlackConfig:
        if _set(self.token) and not self.channel:
            raise ValueError("slack.token needs slack.channel")
        if self.actions is not None and _set(self.webhook_url):
            raise ValueError("slack.actions needs a bot token: an incoming webhook's message cannot be updated")
        return self


class EmailConfig(_Strict):
    """SMTP delivery through aiosmtplib; unset fields come from `global.smtp_*`."""

    to: list[str] = Field(min_length=1)
    from_: str | None = Field(default=None, alias="from")
    smarthost: str | None = None
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    require_tls: bool | None = None
    tls_ca_file: str | None = None
    hello: str | None = None

    def missing_secret(self) -> str | None:
        return None if self.smarthost else "smarthost"


class PagerDutyConfig(_Strict):
    """PagerDuty Events API v2; `url` is the full enqueue URL (overridable for proxies and tests)."""

    routing_key: SecretStr | None = None
    url: str = DEFAULT_PAGERDUTY_URL
    client: str = "relay"
    client_url: str | None = None

    def missing_secret(self) -> str | None:
        return None if _set(self.routing_key) else "routing_key"


class RateLimit(_Strict):
    """A token bucket: `rate` messages per second on average, `burst` at once."""

    rate: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class StormConfig(_Strict):
    """Coalescing in a storm (relay.storms): when what waits for this receiver would take longer than `window` to
    send at its rate, relay folds it into summaries (at most one per `window`; a bot token's summary is updated in
    place more often). Notifications with an alert whose `severity` is in `never_fold` are always sent on their own."""

    enabled: bool = True
    window: Duration = parse_duration("30s")
    never_fold: list[str] = Field(default_factory=lambda: ["critical"])

    @model_validator(mode="after")
    def _window_positive(self) -> StormConfig:
        if self.window.total_seconds() < 1:
            raise ValueError("storm.window must be at least 1s")
        return self


class ReceiverConfig(_Strict):
    name: str = Field(min_length=1)
    slack: SlackConfig | None = None
    email: EmailConfig | None = None
    pagerduty: PagerDutyConfig | None = None
    webhook: WebhookConfig | None = None
    discord: DiscordConfig | None = None
    telegram: TelegramConfig | None = None
    teams: TeamsConfig | None = None
    templates: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None
    give_up_after: Duration = parse_duration("24h")
    fallback: str | None = None
    storm: StormConfig = Field(default_factory=StormConfig)

    @model_validator(mode="after")
    def _exactly_one_integration(self) -> ReceiverConfig:
        given = [name for name in INTEGRATIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"receiver {self.name!r} must have exactly one of {', '.join(INTEGRATIONS)} "
                             f"(has {given})")
        if self.pagerduty is not None and "storm" in self.model_fields_set and self.storm.enabled:
            raise ValueError(f"receiver {self.name!r}: PagerDuty is never folded (each incident matters); "
                             "remove `storm` or set `storm: {enabled: false}`")
        return self

    @property
    def folds(self) -> bool:
        """Whether relay.storms.stage may fold this receiver's backlog into summaries (never PagerDuty's)."""
        return self.storm.enabled and self.pagerduty is None

    @property
    def integration(self) -> Integration:
        return next(name for name in INTEGRATIONS if getattr(self, name) is not None)

    def secrets(self) -> list[str]:
        """Every secret value of this receiver, for scrubbing texts that quote a provider."""
        config = self.slack or self.email or self.pagerduty
        values = [getattr(config, name, None) for name in ("webhook_url", "token", "routing_key", "auth_password")]
        if self.slack is not None and self.slack.actions is not None:
            api = self.slack.actions.alertmanager
            values += [api.bearer_token, api.password]
        hook = self.webhook or self.discord or self.telegram or self.teams
        if hook is not None:
            values += [SecretStr(v) for v in hook.secret_values()]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr) and v.get_secret_value().strip()]

    def missing_secret(self) -> str | None:
        """The name of the unset setting that keeps this receiver from sending, if any."""
        config = getattr(self, self.integration)
        missing: str | None = config.missing_secret()
        return missing


class GlobalConfig(_Strict):
    smtp_smarthost: str | None = None
    smtp_from: str | None = None
    smtp_auth_username: str | None = None
    smtp_auth_password: SecretStr | None = None
    smtp_require_tls: bool = True
    smtp_hello: str | None = None
    smtp_tls_ca_file: str | None = None


def with_globals(receiver: ReceiverConfig, globals_: GlobalConfig) -> ReceiverConfig:
    """Fill an email receiver's unset SMTP fields from `global.smtp_*`, as Alertmanager does."""
    email = receiver.email
    if email is None:
        return receiver
    filled = email.model_copy(
        update={
            "from_": email.from_ or globals_.smtp_from,
            "smarthost": email.smarthost or globals_.smtp_smarthost,
            "auth_username": email.auth_username or globals_.smtp_auth_username,
            "auth_password": email.auth_password or globals_.smtp_auth_password,
            "require_tls": globals_.smtp_require_tls if email.require_tls is None else email.require_tls,
            "tls_ca_file": email.tls_ca_file or globals_.smtp_tls_ca_file,
            "hello": email.hello or globals_.smtp_hello,
        }
    )
    return receiver.model_copy(update={"email": filled})
