"""A template change reviewed as what people will read: each receiver's messages rendered before and after.

Both sides are rendered by relay.channels.preview (the code behind `relay templates
render` and the golden files), for the same sample alerts at the same clock, so
every difference comes from the change: a template file, a receiver's template
overrides, or a receiver setting that shows in the message (channel, mention).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from relay.alerts import WebhookMessage
from relay.channels.preview import as_notification, readable_email, render, resolved, synthetic_group
from relay.cli.review.rulefiles import RuleAlert
from relay.config.receivers import ReceiverConfig
from relay.config.routes import Routes
from relay.errors import ConfigError, DeliveryError
from relay.templating import PARTS, Templates

SAMPLE_START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # synthetic alerts fire at a fixed time: renders are stable
RENDERED_AFTER = timedelta(minutes=10)  # "now" for a sample: ten minutes after its latest event


@dataclass(frozen=True)
class Sample:
    """An Alertmanager group to render, named as the review shows it, with the clock it is rendered at."""

    name: str
    group: WebhookMessage
    now: datetime


@dataclass(frozen=True)
class Message:
    sample: str
    status: str
    before: str
    after: str


@dataclass(frozen=True)
class TemplateChange:
    """A receiver (on both sides) whose template files or rendered messages differ."""

    receiver: str
    integration: str
    files: tuple[str, ...]  # the parts whose effective template changed, e.g. `title: slack/title.j2`
    messages: tuple[Message, ...]  # only those that differ
    rendered: int  # how many messages were compared


def fixture_samples(folder: Path) -> list[Sample]:
    """Every Alertmanager webhook body (`*.json`) in a folder, e.g. tests/fixtures/alertmanager."""
    samples = []
    for path in sorted(folder.glob("*.json")):
        try:
            group = WebhookMessage.from_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            raise ConfigError(f"not an Alertmanager webhook body: {exc}".splitlines()[0], file=str(path)) from None
        times = [t for a in group.alerts for t in (a.starts_at, a.ends_at) if t is not None]
        samples.append(Sample(path.name, group, max(times, default=SAMPLE_START) + RENDERED_AFTER))
    return samples


def rule_samples(alerts: Iterable[RuleAlert]) -> list[Sample]:
    """One synthetic alert per alert name of the rule files, with the rule's labels and annotations as written
    (Prometheus would fill in their `{{ $labels }}`; a preview shows them as they are)."""
    seen: dict[str, Sample] = {}
    for alert in alerts:
        if alert.name not in seen:
            group = synthetic_group(alert.labels, alert.annotations, SAMPLE_START)
            seen[alert.name] = Sample(alert.name, group, SAMPLE_START + RENDERED_AFTER)
    return list(seen.values())


def default_samples() -> list[Sample]:
    """Without fixtures or rule files: one critical alert, as `relay routes check` renders."""
    labels = {"alertname": "ExampleAlert", "severity": "critical", "namespace": "default", "pod": "app-0"}
    annotations = {"summary": "Example alert from relay routes diff", "description": "Example.",
                   "runbook_url": "https://runbooks.example/ExampleAlert"}
    return [Sample("ExampleAlert", synthetic_group(labels, annotations, SAMPLE_START), SAMPLE_START + RENDERED_AFTER)]


def _variants(sample: Sample) -> list[WebhookMessage]:
    """The group as given and, when something in it fires, its resolve (templates have both branches)."""
    group = sample.group
    return [group, resolved(group, sample.now)] if group.status == "firing" else [group]


def _shown(receiver: ReceiverConfig, group: WebhookMessage, templates: Templates, now: datetime) -> str:
    try:
        text = render(receiver, as_notification(receiver, group, now), templates, now)
    except DeliveryError as exc:
        return f"(cannot render: {exc})\n"
    return readable_email(text) if receiver.email is not None else text


def _source(templates: Templates, name: str) -> str | None:
    """The text of a template as `templates` would load it: the directory's file, else the packaged one."""
    if templates.directory is not None and (templates.directory / name).is_file():
        return (templates.directory / name).read_text(encoding="utf-8", errors="replace")
    packaged = resources.files("relay").joinpath("templates", *name.split("/"))
    return packaged.read_text(encoding="utf-8") if packaged.is_file() else None


def changed_files(old: ReceiverConfig, old_t: Templates, new: ReceiverConfig, new_t: Templates) -> list[str]:
    """The parts whose effective template differs, by name (`title: slack/title.j2`) or override."""
    if old.integration != new.integration:
        return [f"{old.integration} -> {new.integration}"]
    out = []
    for part in PARTS[new.integration]:
        before = old_t.template_name(old.integration, part, old.templates)
        after = new_t.template_name(new.integration, part, new.templates)
        if before != after:
            out.append(f"{part}: {before} -> {after}")
        elif _source(old_t, before) != _source(new_t, after):
            out.append(f"{part}: {after}")
    return out


def changes(old: Routes, old_t: Templates, new: Routes, new_t: Templates, samples: list[Sample],
            renamed: Iterable[tuple[str, str]] = ()) -> list[TemplateChange]:
    """Each receiver of both sides (by name, or renamed) whose templates or rendered messages differ, with the
    messages that differ."""
    pairs = sorted([*((n, n) for n in set(old.receivers) & set(new.receivers)), *renamed], key=lambda p: p[1])
    out = []
    for was_named, name in pairs:
        # A renamed receiver is rendered under its new name on both sides: a name is part of email Message-IDs,
        # and the rename itself is listed with the receivers.
        before, after = old.receivers[was_named].model_copy(update={"name": name}), new.receivers[name]
        files = changed_files(before, old_t, after, new_t)
        messages, rendered = [], 0
        for sample in samples:
            for group in _variants(sample):
                rendered += 1
                was, now = _shown(before, group, old_t, sample.now), _shown(after, group, new_t, sample.now)
                if was != now:
                    messages.append(Message(sample.name, group.status, was, now))
        if files or messages:
            out.append(TemplateChange(name, after.integration, tuple(files), tuple(messages), rendered))
    return out
