"""Heartbeats (a dead man's switch): alerts that must keep arriving, and relay's own notice when one stops.

Prometheus fires an always-on `Watchdog` alert that Alertmanager re-sends every
`repeat_interval`; when it stops arriving, the pipeline in front of relay is
broken and nothing else would tell anyone. A heartbeat alert is consumed (never
routed); its absence and its return become an ordinary Alertmanager-style group
(`RelayHeartbeatMissing`, firing then resolved), so it is rendered, deduplicated,
threaded and resolved like any other alert. relay.heartbeat.switch runs the checks.

When the switch arms (`arm`): by default once the first heartbeat has arrived, so a relay that no Alertmanager
talks to yet (one started to try it) does not page, and says so at start and in `relay_heartbeat_armed`; with
`arm: start`, also when none ever arrives within `max_silence` of relay first watching for it. Either way the
clock is the store's (relay.store.base.Store.heartbeats), never a process's start.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from relay.alerts import Status, WebhookMessage
from relay.alerts.fingerprint import fingerprint
from relay.alerts.priority import OWN
from relay.config.durations import format_duration
from relay.config.heartbeat import HeartbeatConfig
from relay.config.receivers import ReceiverConfig
from relay.store.base import Candidate
from relay.times import GO_ZERO_TIME, rfc3339

ALERTNAME = "RelayHeartbeatMissing"
# Its runbook ships with relay (docs/runbooks/); a heartbeat's own `annotations: {runbook_url: …}` replaces it.
RUNBOOK_URL = f"https://github.com/ojeomneo/relay/blob/main/docs/runbooks/{ALERTNAME}.md"
# The notice is sent once per episode: a reminder would only repeat what the firing message already says.
NO_REMINDER = timedelta(days=3650)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def silent_for(heard_at: float, returned_at: float) -> str:
    """How long none arrived, as the return's log line and notice say it: `8m0s`."""
    seconds = max(0.0, returned_at - heard_at)
    return format_duration(timedelta(seconds=seconds)) if seconds >= 60 else f"{seconds:.0f}s"


def notice_group(beat: HeartbeatConfig, missing_since: float, last_seen: float | None, watched_since: float,
                 returned_at: float | None = None, heard_at: float | None = None) -> WebhookMessage:
    """The missing notice as Alertmanager would have sent it: one alert, startsAt = when relay found it missing;
    with `returned_at`, its resolve (`heard_at`: when it was last heard of before it went missing).

    The resolve carries the same labels and startsAt, so dedup, Slack threads and PagerDuty's dedup_key treat it
    as the end of that episode.
    """
    status: Status = "firing" if returned_at is None else "resolved"
    labels = {"alertname": ALERTNAME, "severity": "critical", "heartbeat": beat.name}
    silence = format_duration(beat.max_silence)
    if returned_at is not None:
        heard = heard_at if heard_at is not None else missing_since - beat.max_silence.total_seconds()
        description = (f"relay receives the {beat.alert_label} heartbeat again (at {_when(returned_at)}); none had "
                       f"arrived for {silent_for(heard, returned_at)} (since {_when(heard)}). Alerts raised "
                       "meanwhile may have been lost or delayed.")
    else:
        since = (f"since {_when(last_seen)}" if last_seen is not None
                 else f"since it started watching for it at {_when(watched_since)}")
        description = (f"relay has received no firing {beat.alert_label} alert "
                       f"({', '.join(str(m) for m in beat.matchers)}) {since}, and tolerates {silence}. "
                       "Until it returns, alerts may not reach anyone: check that Prometheus and Alertmanager "
                       "are up and can reach relay.")
    annotations = {
        "summary": f"No {beat.alert_label} heartbeat from Alertmanager for {silence} — "
                   "Prometheus or Alertmanager may be down",
        "description": description,
        "runbook_url": RUNBOOK_URL,
        **beat.annotations,
    }
    alert = {"status": status, "labels": labels, "annotations": annotations,
             "startsAt": rfc3339(datetime.fromtimestamp(missing_since, UTC)),
             "endsAt": rfc3339(datetime.fromtimestamp(returned_at, UTC)) if returned_at is not None else GO_ZERO_TIME,
             "generatorURL": "", "fingerprint": fingerprint(labels)}
    return WebhookMessage.model_validate({
        "version": "4", "groupKey": f'{{}}/relay-heartbeat:{{heartbeat="{beat.name}"}}', "status": status,
        "receiver": "relay", "alerts": [alert], "groupLabels": {"alertname": ALERTNAME, "heartbeat": beat.name},
        "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "",
    })


def notice(beat: HeartbeatConfig, receivers: Mapping[str, ReceiverConfig], group: WebhookMessage) -> list[Candidate]:
    """One candidate per receiver of the heartbeat that the loaded routes.yaml still has, ranked as relay's own
    notice (relay.alerts.priority.OWN: first in line, never folded, whatever routes.yaml `priority` says)."""
    return [Candidate(name, receivers[name].integration, group, (NO_REMINDER,), receivers[name].give_up_after, OWN)
            for name in beat.receivers if name in receivers]
