"""The resolve of an alert silenced from Slack: Alertmanager sends none while the alert is silenced, so relay asks.

Every silence relay created (relay.actions.perform) is watched until it ends: at most every
RELAY_SILENCE_WATCH_SECONDS per silence, and at most BATCH silences a round, relay asks the receiver's Alertmanager
(`GET /api/v2/alerts?filter=…`). An absence alone proves nothing: Alertmanager keeps alerts in memory, so a restarted
one answers `[]` until Prometheus sends them again. relay takes the alert as resolved only once it has been absent, at
every ask, for RELAY_ABSENCE_GRACE_SECONDS from an Alertmanager that had been up that long already (`/api/v2/status`
uptime, by Alertmanager's clock); a restart starts the count again, and a sighting ends it. Then relay enqueues the
resolve as Alertmanager would have sent it, in the alert's own lane, with why (`relayInferred`, shown in history):
the message turns green and its thread says so, and every other receiver of the alert, or of a step of its
escalation, gets its resolve (PagerDuty's incident closes), once (the store's dedup, also across replicas, which take
each watch in turn). If the alert fires again after that, the store's dedup treats it as a new page.
A silence that ends, or is expired with Unsilence, is no longer watched: Alertmanager notifies for the alert
again by itself.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from relay import outbox
from relay.actions.alertmanager import AlertmanagerClient, base_url
from relay.alerts import INFERRED, WebhookMessage
from relay.errors import DeliveryError
from relay.runtime import Runtime
from relay.stages import escalation, loop
from relay.store.base import Candidate, Store
from relay.store.records import Watch
from relay.telemetry import metrics
from relay.webhook import candidates

log = logging.getLogger(__name__)

BATCH = 100


def counted_absence(since: float | None, up_for: float, now: float, grace: float) -> float | None:
    """Since when the alert's absence counts as evidence, after one more absent answer at `now` from an Alertmanager
    up for `up_for` seconds: None while it has been up less than `grace` (a restarted Alertmanager knows nothing yet);
    `now` when the count starts (first absence, or Alertmanager restarted since the count began); else `since`."""
    if up_for < grace:
        return None
    if since is None or since < now - up_for + grace:  # it restarted after the count began
        return now
    return since


class SilenceWatch:
    def __init__(self, store: Store, runtime: Runtime, intake: outbox.Intake, interval: float,
                 grace: float = 300.0) -> None:
        self.store = store
        self.runtime = runtime
        self.intake = intake
        self.interval = interval
        self.grace = grace

    async def run(self) -> None:
        await loop.every(lambda: min(self.interval, 5.0), self.check, "silenced alerts", log,
                         clock=lambda: self.runtime.clock())

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
        api = slack.actions.alertmanager
        try:
            client = AlertmanagerClient(self.runtime.session, base_url(group.externalURL, api), api)
            state = await client.alert_state(alert.labels, alert.fingerprint)
            up_for = await client.up_for() if state is None else 0.0
        except DeliveryError as exc:
            metrics.silence_watch_answers.labels("failed").inc()
            log.warning("cannot ask Alertmanager about silenced alert %s (asked again later): %s", alert.name, exc)
            return 0
        since = None if state is not None else counted_absence(watch.absent_since, up_for, now, self.grace)
        if since is None or now - since < self.grace:
            answer = "firing" if state is not None else "restarted" if since is None else "absent"
            metrics.silence_watch_answers.labels(answer).inc()
            if answer == "restarted":
                log.info("silenced alert %s is absent from an Alertmanager up only %.0fs (grace %.0fs): no evidence "
                         "of a resolve", alert.name, up_for, self.grace)
            if since != watch.absent_since:
                await self.store.watch_absent(watch.receiver, watch.silence_id, since)
            return 0
        metrics.silence_watch_answers.labels("resolved").inc()
        ended = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        done = alert.model_copy(update={"status": "resolved", "endsAt": ended})
        why = {"by": "silence watch", "silence": watch.silence_id, "absent_since": since,
               "alertmanager_up_seconds": round(up_for, 1), "grace_seconds": self.grace,
               "reason": f"absent from Alertmanager for {now - since:.0f}s at every ask, Alertmanager up "
                         f"{up_for:.0f}s (at least the grace period of {self.grace:.0f}s all along)"}
        resolve = WebhookMessage.model_validate({**group.model_dump(mode="json"), "status": "resolved",
                                                 "alerts": [done.model_dump(mode="json")], INFERRED: why})
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
        log.info("silenced alert %s resolved: %s; its resolve is shown", alert.name, why["reason"])
        return 1
