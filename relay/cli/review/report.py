"""`relay routes diff --format text|markdown|json`: a review printed for a terminal, a pull request, or a script.

The markdown is a pull-request comment: a change that stops paging someone comes
first under a warning heading, then what else loses receivers, then what no
longer escalates to someone, then every alert whose receivers change (before →
after) and every alert whose escalation changes, then the messages that read
differently, collapsed. A hidden marker lets a CI job find and update its one
comment. Names from the files are shown as code, so no label value becomes a
mention, a link or markup in the comment.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from typing import Any

from relay.cli.review.sides import Review
from relay.cli.review.templates import Message, TemplateChange
from relay.config.diff import MAX_PROBES, Change

MARKER = "<!-- relay-routes-diff -->"
COMMENT_BUDGET = 60_000  # characters: GitHub refuses comments over 65,536, GitLab notes over 1,000,000


def _names(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names) or "(none)"


def _steps(steps: tuple[str, ...]) -> str:
    """An escalation as a review shows it: `after 10m: pagerduty-oncall; after 30m: ops-email`, or (none)."""
    return "; ".join(steps) or "(none)"


def _whole_diff(message: Message) -> list[str]:
    """The message before and after as one unified diff with all its lines as context: the whole message shows."""
    before, after = message.before.splitlines(), message.after.splitlines()
    return list(difflib.unified_diff(before, after, "before", "after", n=max(len(before), len(after)),
                                     lineterm=""))[2:]


def _headline(review: Review) -> str:
    out = f"{review.base.label} -> {review.head.label}"
    return out + (f" ({review.base.label} does not exist: every route is new)" if review.base.missing else "")


def _stops_escalating(review: Review) -> list[str]:
    lines = []
    for change, impact in [(c, review.escalation_impact(c)) for c in review.escalations]:
        if impact.lost:
            what = "STOPS PAGING when unacknowledged" if impact.pages_lost else "STOPS ESCALATING"
            lines.append(f"{what}: {change.alert} no longer escalates to {_names(impact.lost)} "
                         f"(escalation after: {_steps(change.after)})")
    return lines


def text(review: Review) -> str:
    lines = [_headline(review)]
    if review.empty:
        lines.append(f"no alert changes receivers and no message changes between {review.base.label} and "
                     f"{review.head.label}")
    impacts = [(c, review.impact(c)) for c in review.changes]
    for change, impact in impacts:
        if impact.pages_lost:
            lines.append(f"STOPS PAGING: {change.alert} loses {_names(impact.pages_lost)} "
                         f"(after: {_names(change.after)})")
    for change, impact in impacts:
        if impact.lost and not impact.pages_lost:
            lines.append(f"STOPS NOTIFYING: {change.alert} loses {_names(impact.lost)} (after: {_names(change.after)})")
    lines += _stops_escalating(review)
    for change, impact in impacts:
        if impact.pages_gained:
            lines.append(f"starts paging: {change.alert} through {_names(impact.pages_gained)}")
    lines += [f"receiver renamed: {a} -> {b} (same settings)" for a, b in review.renamed]
    lines += [f"receiver added: {n}" for n in review.added] + [f"receiver removed: {n}" for n in review.removed]
    if review.changes:
        count = len(review.changes)
        lines.append(f"{count} alert{'s change' if count != 1 else ' changes'} receivers:")
        lines += [f"  {change}" for change in review.changes]
    if review.escalations:
        count = len(review.escalations)
        lines.append(f"{count} alert{'s change' if count != 1 else ' changes'} escalation:")
        lines += [f"  {c.alert}: {_steps(c.before)} -> {_steps(c.after)}" for c in review.escalations]
    lines += _mute_lines(review)
    for receiver in review.templates:
        lines.append(f"messages of {_template_summary(receiver)}:")
        for message in receiver.messages:
            lines += [f"--- {receiver.receiver}: {message.sample} ({message.status}) before", "+++ after",
                      *_whole_diff(message)]
    if review.untried:
        lines.append(f"note: {_untried(review)}")
    return "\n".join(lines) + "\n"


def _untried(review: Review) -> str:
    return (f"{review.untried:,} combinations of label values were not tried (relay tries one alert per route and "
            f"at most {MAX_PROBES:,} pairs of label values): a change that only shows in those may be missing")


def _differ(change: TemplateChange) -> str:
    return (f"{len(change.messages)} of {change.rendered} messages differ" if change.messages
            else f"none of {change.rendered} messages differs")


def _template_summary(change: TemplateChange) -> str:
    files = f"{', '.join(change.files)} changed; " if change.files else ""
    return f"{change.receiver} ({change.integration}): {files}{_differ(change)}"


def _html_summary(change: TemplateChange) -> str:
    """The `<summary>` line: raw HTML (no markdown there), names in <code> so none becomes a mention."""
    files = ", ".join(f"<code>{html.escape(f)}</code>" for f in change.files)
    return (f"<code>{html.escape(change.receiver)}</code> ({change.integration}): "
            f"{files + ' changed; ' if files else ''}{_differ(change)}")


def _samples_text(review: Review) -> str:
    if review.samples == "fixtures":
        return f"the Alertmanager webhook bodies in {_code(review.fixtures or '', False)}"
    if review.samples == "rules":
        return "one alert per alerting rule, with the rule's labels and annotations as written"
    return "an example critical alert (no rule files were found)"


def _code(value: str, in_table: bool = True) -> str:
    """A code span that shows `value` as text: no mention, link, emphasis or HTML, pipes kept inside a table."""
    value = value.replace("\n", "\\n")
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    span = f"{ticks}{pad}{value}{pad}{ticks}"
    return span.replace("|", "\\|") if in_table else span


def _codes(names: tuple[str, ...]) -> str:
    return ", ".join(_code(n) for n in names) or "(none)"


def _table(head: tuple[str, str, str], rows: list[tuple[str, str, str]]) -> list[str]:
    return [f"| {' | '.join(head)} |", "|---|---|---|", *(f"| {' | '.join(r)} |" for r in rows), ""]


def _fence(body: str) -> str:
    return "`" * max(3, max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)


def _counts(review: Review) -> str:
    impacts = [review.impact(c) for c in review.changes]
    stop = sum(bool(i.pages_lost) for i in impacts)
    parts = [f"**⚠ {stop} alert{'s' if stop != 1 else ''} stop{'s' if stop == 1 else ''} paging**"] if stop else []
    unescalated = sum(bool(review.escalation_impact(c).lost) for c in review.escalations)
    if unescalated:
        parts.append(f"**⚠ {unescalated} alert{'s' if unescalated != 1 else ''} "
                     f"stop{'s' if unescalated == 1 else ''} escalating**")
    count = len(review.changes)
    parts.append(f"{count} alert{'s change' if count != 1 else ' changes'} receivers")
    if review.escalations:
        count = len(review.escalations)
        parts.append(f"{count} alert{'s change' if count != 1 else ' changes'} escalation")
    if review.templates:
        parts.append(f"messages change for {len(review.templates)} receiver{'s' if len(review.templates) != 1 else ''}")
    return " · ".join(parts)


def _routing_sections(review: Review) -> list[str]:
    impacts = [(c, review.impact(c)) for c in review.changes]
    out: list[str] = []
    stops = [(_code(c.alert), _codes(i.pages_lost), _codes(c.after)) for c, i in impacts if i.pages_lost]
    if stops:
        out += ["### ⚠ Stops paging", "", "These alerts no longer reach a PagerDuty receiver that they reach today.",
                "", *_table(("Alert", "No longer paged through", "Reaches after"), stops)]
    loses = [(_code(c.alert), _codes(i.lost), _codes(c.after)) for c, i in impacts if i.lost and not i.pages_lost]
    if loses:
        out += ["### ⚠ Stops notifying", "", "These alerts no longer reach a receiver that they reach today.", "",
                *_table(("Alert", "No longer sent to", "Reaches after"), loses)]
    escalations = [(c, review.escalation_impact(c)) for c in review.escalations]
    unescalated = [(_code(c.alert), _codes(i.lost) + (" (**stops paging**)" if i.pages_lost else ""),
                    _code(_steps(c.after)))
                   for c, i in escalations if i.lost]
    if unescalated:
        out += ["### ⚠ Stops escalating", "", "When nobody acknowledges these alerts, they no longer reach a receiver "
                "that their escalation reaches today.", "",
                *_table(("Alert", "No longer escalated to", "Escalation after"), unescalated)]
    starts = [(_code(c.alert), _codes(i.pages_gained), _codes(c.before)) for c, i in impacts if i.pages_gained]
    if starts:
        out += ["### Starts paging", "", *_table(("Alert", "Now paged through", "Reached before"), starts)]
    receivers = [f"- renamed: {_code(a, False)} → {_code(b, False)} (same settings)" for a, b in review.renamed]
    receivers += [f"- added: {_code(n, False)}" for n in review.added]
    receivers += [f"- removed: {_code(n, False)}" for n in review.removed]
    if receivers:
        out += ["### Receivers", "", *receivers, ""]
    if review.changes:
        rows = [(_code(c.alert), _codes(c.before), _codes(c.after)) for c in review.changes]
        out += [f"### Alerts whose receivers change ({len(rows)})", "", *_table(("Alert", "Before", "After"), rows)]
    if review.escalations:
        rows = [(_code(c.alert), _code(_steps(c.before)), _code(_steps(c.after))) for c in review.escalations]
        out += [f"### Alerts whose escalation changes ({len(rows)})", "", *_table(("Alert", "Before", "After"), rows)]
    if review.mutes:
        rows = [(_code(c.alert), _code("; ".join(c.before) or "never muted"),
                 _code("; ".join(c.after) or "never muted")) for c in review.mutes]
        out += [f"### Alerts whose quiet hours change ({len(rows)})", "", *_table(("Alert", "Before", "After"), rows)]
    return out


def _message_block(message: Message) -> str:
    body = "\n".join(_whole_diff(message))
    fence = _fence(body)
    return f"{_code(message.sample, False)} ({message.status}):\n\n{fence}diff\n{body}\n{fence}\n"


def _template_sections(review: Review, budget: int) -> list[str]:
    if not review.templates:
        return []
    out = ["### Messages that change", "", f"Rendered before and after for {_samples_text(review)}; "
           "lines marked - are gone, + are new.", ""]
    left_out = 0
    for change in review.templates:
        out += ["<details>", f"<summary>{_html_summary(change)}</summary>", ""]
        for message in change.messages:
            block = _message_block(message)
            if len(block) > budget:
                left_out += 1
                continue
            budget -= len(block)
            out.append(block)
        out += ["</details>", ""]
    if left_out:
        out += [f"{left_out} more changed message{'s' if left_out != 1 else ''} left out to keep this comment "
                "within its size limit: run `relay routes diff` with `--format text` to see them all.", ""]
    return out


def markdown(review: Review) -> str:
    probes = ", ".join(_code(f, False) for f in dict.fromkeys([*review.base.rule_files, *review.head.rule_files]))
    lines = [MARKER, "## relay routes diff", "",
             f"{_code(review.base.label, False)} → {_code(review.head.label, False)}: {_counts(review)}", ""]
    if review.base.missing:
        lines += [f"> {_code(review.base.label, False)} does not exist: every route is new, so every alert below is "
                  "added.", ""]
    if review.empty:
        lines += ["No alert changes receivers, and no receiver's messages change.", ""]
    lines += _routing_sections(review)
    used = sum(len(line) + 1 for line in lines)
    lines += _template_sections(review, COMMENT_BUDGET - used)
    source = f"the alerts of {probes} and " if probes else ""
    footer = f"Probed with {source}label sets built from every matcher of both files."
    if review.untried:
        footer += f" Not complete: {_untried(review)}."
    lines += [*([""] if lines[-1] else []), "---", footer]
    return "\n".join(lines) + "\n"


def _change_json(review: Review, change: Change) -> dict[str, Any]:
    impact = review.impact(change)
    return {"alert": change.alert, "alertname": change.alertname, "labels": dict(change.labels),
            "before": list(change.before), "after": list(change.after), "lost": list(impact.lost),
            "gained": list(impact.gained), "stops_paging": list(impact.pages_lost),
            "starts_paging": list(impact.pages_gained)}


def _mute_lines(review: Review) -> list[str]:
    if not review.mutes:
        return []
    count = len(review.mutes)
    return [f"{count} alert{'s change' if count != 1 else ' changes'} quiet hours (time intervals):",
            *(f"  {_muting(c)}" for c in review.mutes)]


def _muting(change: Change) -> str:
    """`HighLatency (severity=warning) to slack-alerts now muted 18:00-24:00 Asia/Seoul on weekdays`, per receiver."""
    before = {text.split(" ", 1)[0]: text.split(" ", 1)[1] for text in change.before}
    after = {text.split(" ", 1)[0]: text.split(" ", 1)[1] for text in change.after}
    said = []
    for name in dict.fromkeys([*before, *after]):
        if name not in after:
            said.append(f"to {name} no longer {before[name].split(' ', 1)[0]} ({before[name]})")
        elif before.get(name) != after[name]:
            said.append(f"to {name} now {after[name]}")
    return f"{change.alert}: {'; '.join(said)}"


def _escalation_json(review: Review, change: Change) -> dict[str, Any]:
    impact = review.escalation_impact(change)
    return {"alert": change.alert, "alertname": change.alertname, "labels": dict(change.labels),
            "before": list(change.before), "after": list(change.after), "stops_escalating_to": list(impact.lost),
            "starts_escalating_to": list(impact.gained), "stops_paging": list(impact.pages_lost)}


def as_json(review: Review) -> str:
    data = {
        "base": review.base.label, "head": review.head.label, "base_missing": review.base.missing,
        "rule_files": list(dict.fromkeys([*review.base.rule_files, *review.head.rule_files])),
        "untried_combinations": review.untried,
        "changes": [_change_json(review, c) for c in review.changes],
        "escalations": [_escalation_json(review, c) for c in review.escalations],
        "mutes": [{"alert": c.alert, "alertname": c.alertname, "labels": dict(c.labels), "before": list(c.before),
                   "after": list(c.after)} for c in review.mutes],
        "receivers": {"added": list(review.added), "removed": list(review.removed),
                      "renamed": [{"from": a, "to": b} for a, b in review.renamed]},
        "templates": [{"receiver": t.receiver, "integration": t.integration, "files": list(t.files),
                       "rendered": t.rendered,
                       "messages": [{"sample": m.sample, "status": m.status, "before": m.before, "after": m.after}
                                    for m in t.messages]} for t in review.templates],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
