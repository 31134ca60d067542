"""Jinja2 templates in a sandbox, with escaping chosen by the target.

Escaping is the channel's job, not the template author's: every `{{ value }}`
written into a Slack template is escaped for mrkdwn (`& < >`), every value in
an `.html.j2` template is HTML-escaped, so no alert text can inject a mention,
a disguised link or markup. Text that relay itself trusts (a mention from
routes.yaml) is passed as `Markup` and left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from relay.alerts import Alert, Notification
from relay.errors import ConfigError, PermanentDeliveryError

# The parts each integration renders, and the default file of each under templates/.
PARTS: dict[str, dict[str, str]] = {
    "slack": {"text": "slack/text.j2", "title": "slack/title.j2"},
    "email": {"subject": "email/subject.j2", "text": "email/text.j2", "html": "email/html.html.j2"},
    "pagerduty": {"summary": "pagerduty/summary.j2"},
}


def slack_escape(value: object) -> str:
    """Escape the three characters Slack's mrkdwn treats as control: & < >."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_finalize(value: object) -> object:
    if isinstance(value, Markup) or value is None:
        return "" if value is None else str(value)
    return slack_escape(value)


def relative_time(value: datetime | str | None, now: datetime | None = None) -> str:
    """`5m ago`-style text for a timestamp."""
    if isinstance(value, str):
        from relay.alerts import parse_time

        value = parse_time(value)
    if value is None:
        return ""
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} {suffix}"
    return f"{seconds}s {suffix}"


def silence_url(external_url: str, labels: Mapping[str, str]) -> str:
    """A link into Alertmanager's UI that opens a new silence prefilled with the alert's labels."""
    if not external_url:
        return ""
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def _alert_context(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at,
        "fingerprint": alert.fingerprint,
        "generatorURL": alert.generatorURL,
        "name": alert.name,
    }


def context(notification: Notification, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What every template sees; names follow Alertmanager's template data."""
    group = notification.group
    alerts = [_alert_context(a) for a in group.alerts]
    ctx: dict[str, Any] = {
        "status": notification.status,
        "receiver": notification.receiver,
        "alerts": alerts,
        "firing": [a for a in alerts if a["status"] == "firing"],
        "resolved": [a for a in alerts if a["status"] == "resolved"],
        "groupLabels": dict(group.groupLabels),
        "commonLabels": dict(group.commonLabels),
        "commonAnnotations": dict(group.commonAnnotations),
        "externalURL": group.externalURL,
        "groupKey": group.groupKey,
        "truncatedAlerts": group.truncatedAlerts,
    }
    ctx.update(extra or {})
    return ctx


class Templates:
    """The default templates directory plus a receiver's overrides, syntax-checked at load."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        loader = jinja2.FileSystemLoader(str(directory))
        common: dict[str, Any] = {"loader": loader, "undefined": jinja2.ChainableUndefined, "trim_blocks": True,
                                  "lstrip_blocks": True, "keep_trailing_newline": False}
        self._plain = SandboxedEnvironment(autoescape=False, **common)
        self._html = SandboxedEnvironment(autoescape=True, **common)
        self._slack = SandboxedEnvironment(autoescape=False, finalize=_slack_finalize, **common)
        for env in (self._plain, self._html, self._slack):
            env.filters["reltime"] = relative_time
            env.globals["silence_url"] = silence_url

    def _env(self, integration: str, name: str) -> SandboxedEnvironment:
        if name.endswith(".html.j2") or name.endswith(".html"):
            return self._html
        return self._slack if integration == "slack" else self._plain

    def template_name(self, integration: str, part: str, overrides: Mapping[str, str]) -> str:
        return overrides.get(part) or PARTS[integration][part]

    def check(self, integration: str, overrides: Mapping[str, str], where: str) -> None:
        """Compile every part a receiver uses; a missing or broken template is a ConfigError."""
        unknown = set(overrides) - set(PARTS[integration])
        if unknown:
            raise ConfigError(f"{where}: unknown template part(s) {sorted(unknown)} for {integration}; "
                              f"known: {sorted(PARTS[integration])}")
        for part in PARTS[integration]:
            name = self.template_name(integration, part, overrides)
            try:
                self._env(integration, name).get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(f"template syntax error: {exc.message}", file=str(self.directory / name),
                                  line=exc.lineno) from None
            except jinja2.TemplateNotFound:
                raise ConfigError(f"{where}: template {name!r} not found in {self.directory}") from None

    def render(self, integration: str, part: str, overrides: Mapping[str, str], ctx: Mapping[str, Any]) -> str:
        """Render one part; any template failure is permanent (retrying renders the same)."""
        name = self.template_name(integration, part, overrides)
        try:
            template = self._env(integration, name).get_template(name)
            return template.render(ctx).strip()
        except jinja2.TemplateError as exc:
            raise PermanentDeliveryError("template_error", f"{name}: {exc}") from None
