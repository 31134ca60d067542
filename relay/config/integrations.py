"""The settings of the webhook-style receivers: a generic `webhook`, `discord`, `telegram` and `teams`.

Keys follow Alertmanager's where it has them (`webhook_configs.url`, `max_alerts`, `http_config`;
`discord_configs.webhook_url`; `telegram_configs.bot_token`, `chat_id`, `message_thread_id`, `api_url`;
`msteamsv2_configs.webhook_url`). Every secret is a SecretStr from `${VAR}`; a receiver whose secret is unset still
loads, and its notifications become dead letters with reason `unconfigured` until it is set.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _set(secret: SecretStr | None) -> bool:
    return secret is not None and secret.get_secret_value().strip() != ""


def _values(*secrets: SecretStr | None) -> list[str]:
    return [s.get_secret_value().strip() for s in secrets if _set(s) and s is not None]


class BasicAuth(_Strict):
    username: str = Field(min_length=1, pattern=r"^[^:]+$")
    password: SecretStr | None = None


class Authorization(_Strict):
    """An Authorization header `<type> <credentials>` (Alertmanager's `authorization`)."""

    type: str = Field(default="Bearer", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,30}$")
    credentials: SecretStr | None = None


class TlsConfig(_Strict):
    """A CA to trust besides the system's, a client certificate, or (tests, private CAs) no verification."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("tls_config needs both cert_file and key_file, or neither")
        return self


class HttpConfig(_Strict):
    """How relay authenticates to a webhook: one of `bearer_token`, `authorization`, `basic_auth`; and TLS."""

    bearer_token: SecretStr | None = None
    authorization: Authorization | None = None
    basic_auth: BasicAuth | None = None
    tls_config: TlsConfig = Field(default_factory=TlsConfig)

    @model_validator(mode="after")
    def _one_auth(self) -> HttpConfig:
        given = [k for k in ("bearer_token", "authorization", "basic_auth") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"http_config takes one of bearer_token, authorization, basic_auth (has {given})")
        return self

    def secret_values(self) -> list[str]:
        return _values(self.bearer_token, self.authorization.credentials if self.authorization else None,
                       self.basic_auth.password if self.basic_auth else None)


class WebhookConfig(_Strict):
    """POST each notification to `url`: Alertmanager's webhook v4 body by default (the receiver's `body` template
    replaces it), at most `max_alerts` alerts (0: all; the rest are counted in `truncatedAlerts`)."""

    url: SecretStr | None = None
    http_config: HttpConfig = Field(default_factory=HttpConfig)
    max_alerts: int = Field(default=0, ge=0)
    content_type: str = Field(default="application/json", pattern=r"^[\w.+-]+/[\w.+-]+(;\s*[\w-]+=[\w.-]+)?$")

    def missing_secret(self) -> str | None:
        return None if _set(self.url) else "url"

    def secret_values(self) -> list[str]:
        return [*_values(self.url), *self.http_config.secret_values()]


class DiscordConfig(_Strict):
    """A channel webhook (`https://discord.com/api/webhooks/{id}/{token}`); `username` and `avatar_url` override
    the webhook's own."""

    webhook_url: SecretStr | None = None
    username: str | None = Field(default=None, max_length=80)
    avatar_url: str | None = None

    def missing_secret(self) -> str | None:
        return None if _set(self.webhook_url) else "webhook_url"

    def secret_values(self) -> list[str]:
        return _values(self.webhook_url)


class TelegramConfig(_Strict):
    """A bot (`bot_token` from @BotFather) posting to `chat_id`, in forum topic `message_thread_id` if given."""

    bot_token: SecretStr | None = None
    chat_id: int | str = Field(description="a numeric chat ID, or @channelusername")
    message_thread_id: int | None = Field(default=None, gt=0)
    api_url: str = DEFAULT_TELEGRAM_API_URL
    disable_notifications: bool = False

    @field_validator("chat_id", mode="before")
    @classmethod
    def _numeric(cls, value: object) -> object:
        """`chat_id: "${TELEGRAM_CHAT_ID}"` (quoted) is still the number it holds."""
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value.strip())
        return value

    @model_validator(mode="after")
    def _chat(self) -> TelegramConfig:
        if isinstance(self.chat_id, str) and not (self.chat_id.startswith("@") and len(self.chat_id) > 1):
            raise ValueError("telegram.chat_id is a number (e.g. -1001234567890) or @channelusername")
        return self

    @property
    def group(self) -> bool:
        """A group, supergroup or channel (negative IDs, @names): Telegram allows about 20 messages a minute there,
        one a second in a private chat."""
        return isinstance(self.chat_id, str) or self.chat_id < 0

    def missing_secret(self) -> str | None:
        return None if _set(self.bot_token) else "bot_token"

    def secret_values(self) -> list[str]:
        return _values(self.bot_token)


class TeamsConfig(_Strict):
    """A Teams Workflows URL ("When a Teams webhook request is received"); the flow posts the Adaptive Card."""

    webhook_url: SecretStr | None = None

    def missing_secret(self) -> str | None:
        return None if _set(self.webhook_url) else "webhook_url"

    def secret_values(self) -> list[str]:
        return _values(self.webhook_url)
