"""The resolve of an alert silenced from Slack: Alertmanager sends none while the alert is silenced, so relay asks.

Every silence relay created (relay.channels.slack.perform) is watched until it ends: at most every
RELAY_SILENCE_WATCH_SECONDS per silence, and at most BATCH silences a round, relay asks the Alertmanager that
sent the alert for its state (`GET /api/v2/alerts?filter=…`). Once Alertmanager no longer has it firing, relay
enqueues its resolve as Alertmanager would have sent it, in the alert's own lane: the message turns green and its
thread says so, and every other receiver of the alert, or of a step of its escalation, gets its resolve
(PagerDuty's incident closes), once (the store's dedup, also across replicas, which take each watch in turn).
A silence that ends, or is expired with Unsilence, is no longer watched: Alertmanager notifies for the alert
again by itself.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from relay import escalation, outbox, stages
from relay.alertmanager import AlertmanagerClient, base_url
from relay.alerts import WebhookMessage
from relay.config.runtime import Runtime
from relay.errors import DeliveryError
from relay.store.base import Candidate, Store, Watch
from relay.webhook import candidates

log = logging.getLogger(__name__)

BATCH = 100


class SilenceWatch:
    def __init__(self, store: Store, runtime: Runtime, intake: outbox.Intake, interval: float) -> None:
        self.store = store
        self.runtime = runtime
        self.intake = intake
        self.interval = interval

    async def run(self) -> None:
        await stages.every(lambda: min(self.interval, 5.0), self.check, "silenced alerts", log)

    async def check(self, now: float) -> int:
        """Ask about every due watch; returns how many resolves were enqueued."""
        resolved = 0
        for watch in await self.store.watches_due(now, now + self.interval, BATCH):
            resolved += await self._one(watch, now)
        return resolved

    async def _one(self, watch: Watch, now: float) -> int:
        found = self.runtime.receiver(watch.receiver)
        slack = found.config.slack if found is not None else None
        try:
            group = WebhookMessage.model_validate_json(watch.payload)
        except ValidationError:
            group = None
        if found is None or slack is None or slack.actions is None or group is None or self.runtime.session is None:
            await self.store.unwatch_silence(watch.receiver, watch.silence_id)
            return 0
        [alert] = group.alerts[:1]
        try:
            client = AlertmanagerClient(self.runtime.session, base_url(group.externalURL, slack.actions.alertmanager),
                                        slack.actions.alertmanager)
            state = await client.alert_state(alert.labels, alert.fingerprint)
        except DeliveryError as exc:
            log.warning("cannot ask Alertmanager about silenced alert %s (asked again later): %s", alert.name, exc)
            return 0
        if state is not None:
            return 0
        ended = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        done = alert.model_copy(update={"status": "resolved", "endsAt": ended})
        resolve = group.model_copy(update={"alerts": [done], "status": "resolved"})
        routes = self.runtime.routes
        # As if Alertmanager had sent it: every receiver routes.yaml gives the alert (PagerDuty's incident closes
        # too), the silencing Slack receiver at least; dedup makes a later real resolve a no-op.
        chosen = candidates(resolve, routes) if routes is not None else []
        if not any(c.receiver == watch.receiver for c in chosen):
            chosen.append(Candidate(watch.receiver, found.config.integration, resolve, (timedelta(0),),
                                    found.config.give_up_after))
        if routes is not None:  # the receivers an escalation step reached before the silence hear it too
            chosen = await escalation.arm(self.store, routes, resolve, chosen, now)
        await outbox.enqueue(self.intake, self.store, chosen, now)
        await self.store.unwatch_silence(watch.receiver, watch.silence_id)
        log.info("silenced alert %s resolved in Alertmanager: its resolve is shown", alert.name)
        return 1
