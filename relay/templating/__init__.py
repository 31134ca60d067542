"""Jinja2 templates in a sandbox, with escaping chosen by the target.

Escaping is the channel's job, not the template author's: every `{{ value }}`
written into a Slack mrkdwn part is escaped (`& < >`), every value in an HTML
part is HTML-escaped, so no alert text can inject a mention, a disguised link
or markup. Links are only made by relay's helpers from http(s) URLs. Text that
relay itself trusts (a mention from routes.yaml, a link it built) is `Markup`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import quote

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from relay.alerts import Alert, Notification
from relay.errors import ConfigError, PermanentDeliveryError, Reason
from relay.templating import bounds
from relay.templating.escape import markdown_finalize, md_link, safe_url, slack_finalize, slack_link
from relay.templating.neutralise import visible
from relay.times import parse_time

Kind = Literal["plain", "mrkdwn", "html", "markdown"]

# The parts each integration renders: the default file (packaged under relay/templates/) and how values are escaped.
PARTS: dict[str, dict[str, tuple[str, Kind]]] = {
    "slack": {"title": ("slack/title.j2", "plain"), "alert": ("slack/alert.j2", "mrkdwn"),
              "text": ("slack/text.j2", "mrkdwn")},
    "email": {"subject": ("email/subject.j2", "plain"), "text": ("email/text.j2", "plain"),
              "html": ("email/html.html.j2", "html")},
    "pagerduty": {"summary": ("pagerduty/summary.j2", "plain")},
    # The default body is Alertmanager's webhook v4 JSON (`webhook_v4`); a custom one is any text, `tojson` its values.
    "webhook": {"body": ("webhook/body.j2", "plain")},
    "discord": {"title": ("discord/title.j2", "markdown"), "description": ("discord/description.j2", "markdown")},
    "telegram": {"text": ("telegram/text.html.j2", "html")},
    # Teams shows both as written (RichTextBlock TextRuns, never markdown): nothing to escape, nothing to format.
    "teams": {"title": ("teams/title.j2", "plain"), "alert": ("teams/alert.j2", "plain")},
}

# Labels that say nothing to a person reading an alert (the name and severity are shown elsewhere).
NOISE_LABELS = frozenset({"alertname", "severity", "prometheus", "job", "endpoint", "receive", "tenant_id"})
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# The longest Silence link relay writes. Past it no link: a link with fewer matchers would silence more than this
# alert, and percent-encoding a hostile 1 MB label (every backslash three characters, in Python) held the event
# loop for over half a second per alert and channel, while no provider shows a link that long anyway.
SILENCE_LINK_LIMIT = 4096


def silence_url(external_url: str, labels: Mapping[str, str]) -> str:
    """A link into Alertmanager's UI that opens a new silence prefilled with the alert's labels; "" when it would
    be longer than SILENCE_LINK_LIMIT (decided before any encoding: a label's length is what an attacker controls)."""
    if not safe_url(external_url) or sum(len(k) + len(v) for k, v in labels.items()) > SILENCE_LINK_LIMIT:
        return ""
    matchers = ",".join(f'{_matcher_name(k)}="{_matcher_value(v)}"' for k, v in sorted(labels.items()))
    url = f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"
    return url if len(url) <= SILENCE_LINK_LIMIT else ""


def _matcher_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _matcher_name(key: str) -> str:
    """A label name as a matcher names it: as is when it is a classic one, else quoted and escaped like a value
    (Alertmanager 0.27's UTF-8 names), so a key like `a",b=~".*` cannot add matchers to the silence."""
    return key if _LABEL_NAME.fullmatch(key) else f'"{_matcher_value(key)}"'


def _as_time(value: datetime | str | None) -> datetime | None:
    return parse_time(value) if isinstance(value, str) else value


def relative_time(value: datetime | str | None, now: datetime | None = None) -> str:
    """`5m ago`-style text for a timestamp."""
    when = _as_time(value)
    if when is None:
        return ""
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    suffix = "ago" if seconds >= 0 else "from now"
    return f"{duration(abs(seconds))} {suffix}"


def duration(seconds: float) -> str:
    """`1h 5m`-style text for a length of time (two units at most)."""
    seconds = int(seconds)
    units = [(n, u) for n, u in ((seconds // 86400, "d"), (seconds % 86400 // 3600, "h"),
                                 (seconds % 3600 // 60, "m"), (seconds % 60, "s")) if n]
    return " ".join(f"{n}{u}" for n, u in units[:2]) or "0s"


def clock(value: datetime | str | None) -> str:
    """A timestamp as people read it across time zones: `2026-11-26 07:37 UTC`."""
    when = _as_time(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when is not None else ""


def lasted(alert: Mapping[str, Any]) -> str:
    """How long a resolved alert fired."""
    start, end = alert.get("startsAt"), alert.get("endsAt")
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return ""
    return duration(max(0.0, (end - start).total_seconds()))


@jinja2.pass_context
def _reltime(ctx: jinja2.runtime.Context, value: datetime | str | None) -> str:
    now = ctx.get("now")
    return relative_time(value, now if isinstance(now, datetime) else None)


def distinguishing(labels: Mapping[str, str], common: Mapping[str, str], group_size: int) -> dict[str, str]:
    """The labels that tell this alert apart: in a group, those not shared by all; never the noise."""
    return {k: v for k, v in sorted(labels.items())
            if k not in NOISE_LABELS and (group_size == 1 or k not in common)}


def shown(values: Mapping[str, str]) -> dict[str, str]:
    """Labels or annotations as a message may show them: hidden and control characters made visible, in keys
    too (relay.templating.neutralise). Links are built from the raw values, so a Silence link still matches the
    alert."""
    return {visible(k): visible(v) for k, v in values.items()}


def _alert_context(alert: Alert, group_size: int, common: Mapping[str, str], external_url: str) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": shown(alert.labels),
        "annotations": shown(alert.annotations),
        "startsAt": alert.starts_at,
        "endsAt": alert.ends_at,
        "fingerprint": visible(alert.fingerprint),
        "generatorURL": visible(alert.generatorURL),
        "name": visible(alert.name),
        "extraLabels": shown(distinguishing(alert.labels, common, group_size)),
        "runbookURL": safe_url(alert.annotations.get("runbook_url")),
        "sourceURL": safe_url(alert.generatorURL),
        "silenceURL": silence_url(external_url, alert.labels),
    }


class AlertContexts(Sequence[dict[str, Any]]):
    """Alerts as templates see them, each built on first use and then kept.

    A group of 20,000 alerts cost seconds to prepare (labels, links) although Slack shows 48 and an email a few
    hundred; counting (`firing | length`) needs only the statuses. `firing` and `resolved` share the built ones.
    """

    def __init__(self, alerts: Sequence[Alert], build: Callable[[Alert], dict[str, Any]],
                 cache: dict[int, dict[str, Any]] | None = None, indices: Sequence[int] | None = None) -> None:
        self._alerts, self._build = alerts, build
        self._cache: dict[int, dict[str, Any]] = {} if cache is None else cache
        self._indices = range(len(alerts)) if indices is None else indices

    def where(self, status: str) -> AlertContexts:
        return AlertContexts(self._alerts, self._build, self._cache,
                             [i for i in self._indices if self._alerts[i].status == status])

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> AlertContexts: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | AlertContexts:
        if isinstance(index, slice):
            return AlertContexts(self._alerts, self._build, self._cache, self._indices[index])
        i = self._indices[index]
        if i not in self._cache:
            self._cache[i] = self._build(self._alerts[i])
        return self._cache[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[n] for n in range(len(self)))


def context(notification: Notification, extra: Mapping[str, Any] | None = None,
            now: datetime | None = None) -> dict[str, Any]:
    """What every template sees; names follow Alertmanager's template data, plus relay's helpers."""
    group = notification.group
    size = len(group.alerts)
    alerts = AlertContexts(group.alerts, lambda a: _alert_context(a, size, group.commonLabels, group.externalURL))
    common_extra = shown({k: v for k, v in sorted(group.commonLabels.items())
                          if k not in NOISE_LABELS}) if size > 1 else {}
    ctx: dict[str, Any] = {
        "status": notification.status,
        "receiver": notification.receiver,
        "alerts": alerts,
        "firing": alerts.where("firing"),
        "resolved": alerts.where("resolved"),
        "groupLabels": shown(group.groupLabels),
        "commonLabels": shown(group.commonLabels),
        "commonAnnotations": shown(group.commonAnnotations),
        "commonExtraLabels": common_extra,
        "externalURL": safe_url(group.externalURL),
        "groupKey": visible(group.groupKey),
        "truncatedAlerts": group.truncatedAlerts,
        "now": now or datetime.now(UTC),
        "escalation": _escalation(notification),
    }
    ctx.update(extra or {})
    return ctx


def _escalation(notification: Notification) -> dict[str, Any] | None:
    """An escalation step as templates see it (None for every other notification): `notice` is relay's own text,
    e.g. `Escalation 1 of 2: not acknowledged for 10m`."""
    step = notification.escalation
    if step is None:
        return None
    after = duration(step.after)
    return {"step": step.step, "steps": step.steps, "after": after,
            "notice": f"Escalation {step.step} of {step.steps}: not acknowledged for {after}"}


class _Sandbox(SandboxedEnvironment):
    """The sandbox with each template's globals as one plain dict.

    Jinja's default is a ChainMap over the environment's globals, which every render copies key by key into its
    new context (a failed lookup per key): about a fifth of rendering a Slack message. Relay sets its globals
    once, before any template is loaded, so a copy taken at load sees the same names and values.
    """

    intercepted_binops = frozenset({"*", "**"})  # bounded (relay.templating.bounds)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        return bounds.bounded_binop(operator, left, right)


MAX_TEMPLATE_BYTES = 256 * 1024  # one template file; relay's largest packaged one is under 4 KB


class TemplateUnreadable(jinja2.TemplateError):
    """A template file relay will not compile: too large, or not UTF-8."""


class _BoundedLoader(jinja2.FileSystemLoader):
    """Template files from a directory, each at most MAX_TEMPLATE_BYTES of UTF-8: a reload of a huge or binary file
    is refused with its name, not read into memory or left to raise UnicodeDecodeError."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        for folder in self.searchpath:
            path = Path(folder, *jinja2.loaders.split_template_path(template))
            if path.is_file():
                break
        else:
            raise jinja2.TemplateNotFound(template)
        with path.open("rb") as handle:
            data = handle.read(MAX_TEMPLATE_BYTES + 1)
        if len(data) > MAX_TEMPLATE_BYTES:
            raise TemplateUnreadable(f"{path}: larger than {MAX_TEMPLATE_BYTES // 1024} KB: refused")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise TemplateUnreadable(f"{path}:{line}: byte 0x{data[exc.start]:02x} is not UTF-8") from None
        return text, str(path), lambda: False


class Templates:
    """The packaged default templates, overridden file by file from a directory, syntax-checked at load.

    A file in `directory` (RELAY_TEMPLATES) wins over the packaged one of the same name, so a deployment can
    replace one part and keep relay's defaults, from an installed wheel, for the rest.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        packaged = jinja2.PackageLoader("relay", "templates")
        loader: jinja2.BaseLoader = (
            packaged if directory is None else jinja2.ChoiceLoader([_BoundedLoader(str(directory)), packaged]))
        common: dict[str, Any] = {"loader": loader, "undefined": jinja2.ChainableUndefined, "trim_blocks": True,
                                  "lstrip_blocks": True, "keep_trailing_newline": False,
                                  "auto_reload": False}  # a reload builds new Templates: no stat per render
        self._envs: dict[Kind, SandboxedEnvironment] = {
            "plain": _Sandbox(autoescape=False, **common),
            "html": _Sandbox(autoescape=True, **common),
            "mrkdwn": _Sandbox(autoescape=False, finalize=slack_finalize, **common),
            "markdown": _Sandbox(autoescape=False, finalize=markdown_finalize, **common),
        }
        self._loaded: dict[tuple[str, str, str], jinja2.Template] = {}  # (integration, part, file) -> template
        for env in self._envs.values():
            env.filters.update(reltime=_reltime, clock=clock, lasted=lasted, safe_url=safe_url)
            env.globals.update(silence_url=silence_url, slack_link=slack_link, md_link=md_link,
                               range=bounds.bounded_range)

    @property
    def where(self) -> str:
        """Where templates are looked up, for error messages."""
        return "the packaged defaults" if self.directory is None else f"{self.directory} or the packaged defaults"

    def template_name(self, integration: str, part: str, overrides: Mapping[str, str]) -> str:
        return overrides.get(part) or PARTS[integration][part][0]

    def _template(self, integration: str, part: str, overrides: Mapping[str, str]) -> jinja2.Template:
        """The compiled template, looked up once (Templates never reload: a reload builds new Templates)."""
        key = (integration, part, self.template_name(integration, part, overrides))
        template = self._loaded.get(key)
        if template is None:
            template = self._loaded[key] = self._envs[PARTS[integration][part][1]].get_template(key[2])
        return template

    def check(self, integration: str, overrides: Mapping[str, str], where: str) -> None:
        """Compile every part a receiver uses; a missing or broken template is a ConfigError."""
        unknown = set(overrides) - set(PARTS[integration])
        if unknown:
            raise ConfigError(f"{where}: unknown template part(s) {sorted(unknown)} for {integration}; "
                              f"known: {sorted(PARTS[integration])}")
        for part in PARTS[integration]:
            name = self.template_name(integration, part, overrides)
            try:
                self._template(integration, part, overrides)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(f"template syntax error: {exc.message}", file=exc.filename or name,
                                  line=exc.lineno) from None
            except jinja2.TemplateNotFound:
                raise ConfigError(f"{where}: template {name!r} not found in {self.where}") from None
            except jinja2.TemplateError as exc:  # TemplateUnreadable, or what an include or import finds wrong
                raise ConfigError(f"{where}: template {name!r}: {exc}") from None
            except RecursionError:  # Jinja parses and compiles recursively: 500 nested parentheses are enough
                raise ConfigError(f"{where}: template {name!r}: nested deeper than relay compiles (a block, an "
                                  "expression or parentheses inside each other hundreds of times)") from None

    def render(self, integration: str, part: str, overrides: Mapping[str, str], ctx: Mapping[str, Any]) -> str:
        """Render one part; any template failure is permanent (retrying renders the same)."""
        try:
            template = self._template(integration, part, overrides)
        except jinja2.TemplateError as exc:
            name = self.template_name(integration, part, overrides)
            raise PermanentDeliveryError(Reason.TEMPLATE, f"{name}: {exc}") from None
        try:
            with bounds.budget():
                return template.render(ctx).strip()
        except Exception as exc:  # template code can raise anything (`1 / 0`, `"a" + 1`): it renders the same next time
            name = self.template_name(integration, part, overrides)
            raise PermanentDeliveryError(Reason.TEMPLATE, f"{name}: {type(exc).__name__}: {exc}") from None
