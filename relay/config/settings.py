"""Settings from the environment (`RELAY_` prefix); routes.yaml holds everything about receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", extra="ignore")

    routes: Path = Path("routes.yaml")
    templates: Path | None = None  # a directory whose files override the packaged default templates, by name
    database_url: str = "sqlite:///relay.db"
    # How long `relay serve` waits for a PostgreSQL that is not up yet (pods often start before their database).
    database_wait_seconds: float = Field(default=60.0, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    webhook_token: SecretStr | None = None
    # The admin API (history, replay, cancel, purge, reload) and the CLI's admin commands; never the webhook token.
    admin_token: SecretStr | None = None
    # Signs in to the console read-only (relay.console): history, receivers, Explain; never Retry or Purge.
    viewer_token: SecretStr | None = None
    # Slack's signing secret of the app whose buttons post to /slack/interactions (relay.actions.endpoint).
    slack_signing_secret: SecretStr | None = None
    # How often relay asks Alertmanager whether an alert it silenced from Slack has resolved (Alertmanager sends no
    # resolve while the alert is silenced), per silence, until the silence ends.
    silence_watch_seconds: float = Field(default=60.0, gt=0)
    # How long an alert must be absent from an Alertmanager that has itself been up at least this long before relay
    # takes the absence as a resolve (relay.actions.silences): a restarted Alertmanager knows no alerts until
    # Prometheus sends them again (about a minute), and its empty answer is no evidence.
    absence_grace_seconds: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # How long a client may take to send a request's headers, and again its body (slow or idle clients).
    request_read_timeout_seconds: float = Field(default=30.0, gt=0)
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"
    # Dispatcher tuning: concurrent deliveries, lease on a claimed notification, grace on SIGTERM.
    workers: int = Field(default=32, gt=0)
    workers_per_receiver: int = Field(default=8, gt=0)
    lease_seconds: float = Field(default=120.0, gt=0)
    send_timeout_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    retry_initial_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    # How long delivered notifications, dedup marks and thread references are kept (Alertmanager keeps 120h).
    retention_hours: float = Field(default=168.0, gt=0)
    # Where people reach this relay (e.g. https://relay.example.com), for links in messages: a storm summary links
    # the notification history of what it folded. Unset: the summary names the `relay notifications` command instead.
    external_url: str | None = None
    # Per-destination token buckets (DESIGN.md defaults); false leaves only receivers' own `rate_limit`.
    rate_limits: bool = True

    @model_validator(mode="after")
    def _lease_outlives_a_send(self) -> Settings:
        if self.lease_seconds <= self.send_timeout_seconds:
            raise ValueError("RELAY_LEASE_SECONDS must be longer than RELAY_SEND_TIMEOUT_SECONDS, "
                             "or a slow send could be claimed and sent twice")
        return self

    @model_validator(mode="after")
    def _external_url_is_http(self) -> Settings:
        if self.external_url is not None:
            self.external_url = self.external_url.strip().rstrip("/") or None
        if self.external_url is not None and not self.external_url.startswith(("http://", "https://")):
            raise ValueError("RELAY_EXTERNAL_URL must be an http:// or https:// URL")
        return self

    @model_validator(mode="after")
    def _admin_token_is_its_own(self) -> Settings:
        if self.admin is not None and self.admin == self.token:
            raise ValueError("RELAY_ADMIN_TOKEN must differ from RELAY_WEBHOOK_TOKEN: Alertmanager holds the "
                             "webhook token, and it must not open the admin API")
        return self

    @model_validator(mode="after")
    def _viewer_token_is_its_own(self) -> Settings:
        if self.viewer is not None and self.viewer in (self.admin, self.token):
            raise ValueError("RELAY_VIEWER_TOKEN must differ from RELAY_ADMIN_TOKEN and RELAY_WEBHOOK_TOKEN: it signs "
                             "in to the console read-only, and must not sign in as admin or post webhooks")
        return self

    @property
    def token(self) -> str | None:
        """The webhook token, trimmed like Alertmanager trims a credentials file (a Secret made with `echo`)."""
        return _trimmed(self.webhook_token)

    @property
    def signing_secret(self) -> str | None:
        return _trimmed(self.slack_signing_secret)

    @property
    def admin(self) -> str | None:
        """The admin API's token, trimmed the same way."""
        return _trimmed(self.admin_token)

    @property
    def viewer(self) -> str | None:
        """The console's read-only token; it opens nothing without an admin token beside it."""
        return _trimmed(self.viewer_token)


def _trimmed(secret: SecretStr | None) -> str | None:
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None
