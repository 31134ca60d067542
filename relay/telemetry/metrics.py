"""Every Prometheus object relay exports, in one place, named as Alertmanager names its own.

Labels carry receiver and integration names and short failure reasons, never
URLs, tokens or keys.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from relay import __version__

# Latencies from a few milliseconds (a local provider) to minutes (retries through an outage).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

alerts_received = Counter("relay_alerts_received", "Alerts received in webhooks.", ["status"])
webhook_requests = Counter("relay_webhook_requests", "Webhook requests by HTTP status code.", ["code"])
notifications = Counter("relay_notifications", "Notifications enqueued for delivery.", ["receiver", "integration"])
notifications_deduplicated = Counter(
    "relay_notifications_deduplicated", "Alerts not notified again because the receiver already heard of them.",
    ["receiver"])
notification_requests = Counter("relay_notification_requests", "Delivery attempts (provider calls).",
                                ["receiver", "integration"])
notification_requests_failed = Counter("relay_notification_requests_failed", "Delivery attempts that failed.",
                                       ["receiver", "integration", "reason"])
notifications_delivered = Counter("relay_notifications_delivered", "Notifications delivered.",
                                  ["receiver", "integration"])
notifications_failed = Counter("relay_notifications_failed", "Notifications that became dead letters.",
                               ["receiver", "integration", "reason"])
notification_latency = Histogram("relay_notification_latency_seconds", "Duration of one provider call.",
                                 ["receiver", "integration"], buckets=_BUCKETS)
delivery_latency = Histogram("relay_delivery_latency_seconds",
                             "From webhook received to delivered, retries included.",
                             ["receiver", "integration"], buckets=_BUCKETS)
alert_to_delivery = Histogram("relay_alert_to_delivery_seconds",
                              "From the alert's startsAt (or endsAt when resolved) to delivered.",
                              ["integration"], buckets=_BUCKETS)
outbox_pending = Gauge("relay_outbox_pending", "Notifications waiting in the outbox.", ["receiver"])
outbox_oldest_pending = Gauge("relay_outbox_oldest_pending_seconds", "Age of the oldest waiting notification.")
dead_letters = Gauge("relay_dead_letters", "Dead letters waiting for a replay.", ["receiver"])
config_hash = Gauge("relay_config_hash", "Hash of the loaded routes.yaml (first 48 bits).")
config_last_reload_successful = Gauge("relay_config_last_reload_successful",
                                      "Whether the last routes.yaml reload succeeded.")
config_reload_failures = Counter("relay_config_reload_failures_total",
                                 "routes.yaml loads refused (the last good configuration kept serving).")
config_last_reload_success_timestamp = Gauge("relay_config_last_reload_success_timestamp_seconds",
                                             "When routes.yaml was last loaded successfully.")
# relay_build_info{version} 1: which release runs, to join onto other series or spot a half-done rollout.
build_info = Info("relay_build", "The running relay's version.")
build_info.info({"version": __version__})


def set_outbox(pending: dict[str, int], oldest_age: float, dead: dict[str, int], receivers: list[str]) -> None:
    """Publish outbox gauges; every known receiver gets a series, zero when empty."""
    for name in set(receivers) | set(pending):
        outbox_pending.labels(name).set(pending.get(name, 0))
    for name in set(receivers) | set(dead):
        dead_letters.labels(name).set(dead.get(name, 0))
    outbox_oldest_pending.set(oldest_age)

heartbeat_last_seen = Gauge("relay_heartbeat_last_seen_timestamp_seconds",
                            "When a configured heartbeat (e.g. the Watchdog) last arrived, as the store knows it "
                            "(0: never).", ["heartbeat"])
escalation_steps = Counter("relay_escalation_steps",
                           "Escalation steps sent, or cancelled (outcome: acknowledged, silenced, resolved, unrouted).",
                           ["outcome"])
silence_watch_answers = Counter(
    "relay_silence_watch_answers",
    "Each time relay asked Alertmanager about an alert silenced from Slack, what it learnt (answer: firing; "
    "restarted: absent from an Alertmanager up less than the grace period, no evidence; absent: absent, not yet for "
    "the whole grace period; resolved: absent that long, the resolve is shown; failed: no answer).", ["answer"])
heartbeat_missing = Gauge("relay_heartbeat_missing", "1 while relay reports a configured heartbeat as missing.",
                          ["heartbeat"])


heartbeat_armed = Gauge("relay_heartbeat_armed",
                        "1 when relay would report a configured heartbeat missing; 0 while it waits for the first one "
                        "to arrive (routes.yaml arm: first_arrival, the default).", ["heartbeat"])


def set_heartbeats(states: dict[str, tuple[float | None, bool, bool]]) -> None:
    """Publish the heartbeats configured now (name -> last seen, missing, armed); removed ones disappear."""
    heartbeat_last_seen.clear()
    heartbeat_missing.clear()
    heartbeat_armed.clear()
    for name, (last_seen, missing, armed) in states.items():
        heartbeat_last_seen.labels(name).set(last_seen or 0.0)
        heartbeat_missing.labels(name).set(int(missing))
        heartbeat_armed.labels(name).set(int(armed))

storm_active = Gauge("relay_storm_active", "1 while relay folds a receiver's backlog into summaries (an alert storm).",
                     ["receiver"])
notifications_coalesced = Counter("relay_notifications_coalesced",
                                  "Notifications delivered in a storm's summary instead of on their own.", ["receiver"])


def set_storms(active: set[str], receivers: list[str]) -> None:
    """Publish which receivers are in a storm; every foldable receiver gets a series, 0 when calm (and a coalesced
    count from 0, so its rate starts with the first fold)."""
    for name in set(receivers) | active:
        storm_active.labels(name).set(int(name in active))
        notifications_coalesced.labels(name)
