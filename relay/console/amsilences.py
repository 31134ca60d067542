"""Explain's question to Alertmanager: which of its silences match the alert now (GET /api/v2/silences).

Only Alertmanagers relay is configured to talk to are asked (a Slack receiver's `actions.alertmanager`: its `url`,
or the webhook's externalURL when it is one of `external_urls`), with their credentials, never a host a webhook
names on its own (actions.alertmanager.base_url). One that does not answer in a few seconds is said to, and the rest
of the answer stands: an absence of silences read from nobody proves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import aiohttp

from relay.actions.alertmanager import AlertmanagerClient, base_url
from relay.config.receivers import AlertmanagerApi
from relay.config.routes import Routes
from relay.console.explain import Line
from relay.errors import DeliveryError

TIMEOUT = 3.0


def _apis(routes: Routes, external_urls: Sequence[str]) -> dict[str, AlertmanagerApi]:
    found: dict[str, AlertmanagerApi] = {}
    for receiver in routes.receivers.values():
        actions = receiver.slack.actions if receiver.slack is not None else None
        if actions is None or not actions.alertmanager.configured:
            continue
        for external in external_urls or [""]:
            try:
                found.setdefault(base_url(external, actions.alertmanager), actions.alertmanager)
            except DeliveryError:
                continue  # this webhook's Alertmanager is not one relay may ask
    return found


def _epoch(text: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


async def silences(routes: Routes | None, session: aiohttp.ClientSession | None, labels: Mapping[str, str],
                   external_urls: Sequence[str]) -> list[Line]:
    """Lines for Explain: each active or pending silence matching `labels`, per Alertmanager relay may ask."""
    if routes is None or session is None or not labels:
        return []
    apis = _apis(routes, external_urls)
    if not apis:
        return [Line("info", "no Alertmanager API is configured (a Slack receiver's actions.alertmanager): "
                             "silences made in Alertmanager itself are not shown")]
    lines = []
    for url, api in apis.items():
        client = AlertmanagerClient(session, url, api, timeout=TIMEOUT)
        try:
            found = await client.silences(labels)
        except DeliveryError as exc:
            lines.append(Line("info", f"Alertmanager {url} did not answer ({exc.detail or exc.reason}): its "
                                      "silences are not shown"))
            continue
        current = [s for s in found if s.state in ("active", "pending")]
        for silence in current:
            lines.append(Line("ok", f"silenced in Alertmanager {url}: silence {silence.id} ({silence.state}) by "
                                    f"{silence.created_by or 'someone'} until {silence.ends_at}"
                                    + (f": {silence.comment}" if silence.comment else ""), _epoch(silence.ends_at)))
        if not current:
            lines.append(Line("info", f"Alertmanager {url}: no active or pending silence matches this alert"))
    return lines
