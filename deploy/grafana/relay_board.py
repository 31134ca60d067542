"""relay's own dashboard: is every alert reaching its people within the plan's minute, and if not, where it waits.

Every query reads only metrics relay exports (relay/telemetry/metrics.py); the test suite
checks that against a running relay and a real Prometheus.
"""

from __future__ import annotations

from panels import (
    GREEN,
    RED,
    YELLOW,
    Board,
    Query,
    above,
    below,
    stat_panel,
    state,
    steps,
    table_panel,
    timeseries_panel,
)

TARGET_SECONDS = 60  # the plan: an alert reaches its people less than 1 minute after it fires
WITHIN_TARGET = "60.0"  # the `le` bucket of that target, as the Python client writes it
RATE = "$__rate_interval"
SEL = 'receiver=~"$receiver", integration=~"$integration"'
RECEIVER = 'receiver=~"$receiver"'
INTEGRATION = 'integration=~"$integration"'


def quantiles(metric: str, selector: str, by: str, legend: str) -> list[Query]:
    """p50, p95 and p99 of a histogram, per `by`."""
    return [Query(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
                  f"p{round(q * 100)} {legend}") for q in (0.5, 0.95, 0.99)]


def within_target(by: str, window: str) -> str:
    """Share of alerts delivered within the plan's minute of firing."""
    grouping = f"sum by ({by}) " if by else "sum"
    return (f"{grouping}(rate(relay_alert_to_delivery_seconds_bucket{{le=\"{WITHIN_TARGET}\", {INTEGRATION}}}"
            f"[{window}])) / {grouping}(rate(relay_alert_to_delivery_seconds_count{{{INTEGRATION}}}[{window}]))")


def success_ratio(by: str) -> str:
    """Attempts that succeeded over all attempts; integrations without any failure count as 1, not as missing."""
    requests = f"sum by ({by}) (rate(relay_notification_requests_total{{{SEL}}}[{RATE}]))"
    failed = f"sum by ({by}) (rate(relay_notification_requests_failed_total{{{SEL}}}[{RATE}]))"
    return f"({requests} - ({failed} or {requests} * 0)) / {requests}"


def now_row(board: Board) -> None:
    board.row("Now")
    board.add(stat_panel(
        "Delivered within 1 minute", "Share of alerts delivered less than a minute after they fired (startsAt, or "
        "endsAt for a resolve), over the selected time range. The plan's target.", "percentunit",
        [Query(within_target("", "$__range"))], thresholds=steps((None, RED), (0.95, YELLOW), (0.99, GREEN)),
        graph=False), width=3, height=4)
    board.add(stat_panel(
        "Outbox pending", "Notifications waiting for delivery (all selected receivers).", "short",
        [Query(f"sum(relay_outbox_pending{{{RECEIVER}}})")], thresholds=steps((None, GREEN), (50, YELLOW), (500, RED))),
        width=3, height=4)
    board.add(stat_panel(
        "Oldest pending", "Age of the oldest notification still waiting in the outbox; past a minute the plan's "
        "target is already missed for it.", "s", [Query("max(relay_outbox_oldest_pending_seconds)")],
        thresholds=above(TARGET_SECONDS)), width=3, height=4)
    board.add(stat_panel(
        "Dead letters", "Notifications that gave up (permanent failure or give_up_after) and wait for a replay: "
        "relay dead-letters list.", "short", [Query(f"sum(relay_dead_letters{{{RECEIVER}}})")],
        thresholds=above(1), no_value="0"), width=3, height=4)
    board.add(stat_panel(
        "Rate-limited (5m)", "Provider calls answered 429 / rate_limited in the last 5 minutes (failure reason "
        "rate_limited). relay exports no gauge of its own token-bucket waits; these are the provider's refusals, "
        "retried after Retry-After.", "short",
        [Query(f'sum(increase(relay_notification_requests_failed_total{{reason="rate_limited", {SEL}}}[5m]))')],
        thresholds=above(1, YELLOW), no_value="0", graph=False), width=3, height=4)
    board.add(stat_panel(
        "Failed attempts /s", "Provider calls that failed, every reason (retried or dead-lettered).", "ops",
        [Query(f"sum(rate(relay_notification_requests_failed_total{{{SEL}}}[{RATE}]))")],
        thresholds=above(0.01, YELLOW), no_value="0"), width=3, height=4)
    board.add(stat_panel(
        "routes.yaml", "Whether the last reload of routes.yaml and templates succeeded on every replica (the lowest "
        "of them). A failed reload keeps the previous configuration running.", "none",
        [Query("min(relay_config_last_reload_successful)")], mappings=state("reload failed", "loaded"),
        thresholds=below(1), graph=False), width=3, height=4)
    board.add(stat_panel(
        "Config versions", "Distinct routes.yaml versions (hash) running across replicas; more than one means a "
        "rollout or a reload is half done.", "short",
        [Query('count(count_values("hash", relay_config_hash))')], thresholds=above(2, YELLOW), graph=False),
        width=3, height=4)


def latency_row(board: Board) -> None:
    board.row("Latency")
    board.add(timeseries_panel(
        "Alert to delivery (target 1 min)", "From the alert's startsAt (endsAt for a resolve) to delivered, per "
        "integration: Alertmanager's group_wait and relay's retries included. The dashed line is the plan's target.",
        "s", quantiles("relay_alert_to_delivery_seconds", INTEGRATION, "integration", "{{integration}}"),
        threshold=above(TARGET_SECONDS)), width=12)
    board.add(timeseries_panel(
        "Delivery latency (webhook to delivered)", "From relay receiving the webhook to the provider accepting the "
        "notification, retries included, per receiver and integration.", "s",
        quantiles("relay_delivery_latency_seconds", SEL, "receiver, integration", "{{receiver}} ({{integration}})")),
        width=12)
    board.add(timeseries_panel(
        "Delivered within 1 minute", "Share of alerts delivered less than a minute after they fired, per "
        "integration.", "percentunit", [Query(within_target("integration", RATE), "{{integration}}")],
        threshold=below(0.99), maximum=1), width=12)
    board.add(timeseries_panel(
        "Provider call duration", "One provider call (Slack, SMTP, PagerDuty), p50 and p95 per receiver.", "s",
        quantiles("relay_notification_latency_seconds", SEL, "receiver, integration",
                  "{{receiver}} ({{integration}})")[:2]), width=12)


def outcomes_row(board: Board) -> None:
    board.row("Outcomes")
    board.add(timeseries_panel(
        "Delivered", "Notifications delivered per second, per receiver and integration.", "ops",
        [Query(f"sum by (receiver, integration) (rate(relay_notifications_delivered_total{{{SEL}}}[{RATE}]))",
               "{{receiver}} ({{integration}})")]), width=6)
    board.add(timeseries_panel(
        "Attempt success ratio", "Provider calls that succeeded, per integration (1 when nothing failed).",
        "percentunit", [Query(success_ratio("integration"), "{{integration}}")], threshold=below(0.95, YELLOW),
        maximum=1), width=6)
    board.add(timeseries_panel(
        "Failed attempts by reason", "Provider calls that failed, by integration and reason (timeout, "
        "rate_limited, server_error, not_found, ...). Transient reasons are retried.", "ops",
        [Query(f"sum by (integration, reason) (rate(relay_notification_requests_failed_total{{{SEL}}}[{RATE}]))",
               "{{integration}}: {{reason}}")]), width=6)
    board.add(timeseries_panel(
        "Dead-lettered by reason", "Notifications that became dead letters, by receiver and reason.", "ops",
        [Query(f"sum by (receiver, reason) (rate(relay_notifications_failed_total{{{SEL}}}[{RATE}]))",
               "{{receiver}}: {{reason}}")]), width=6)


def outbox_row(board: Board) -> None:
    board.row("Outbox")
    board.add(timeseries_panel(
        "Pending by receiver", "Notifications waiting in the outbox (due, backing off or rate limited).", "short",
        [Query(f"sum by (receiver) (relay_outbox_pending{{{RECEIVER}}})", "{{receiver}}")], stacked=True), width=8)
    board.add(timeseries_panel(
        "Oldest pending", "Age of the oldest waiting notification; the dashed line is the plan's minute.", "s",
        [Query("max by (instance) (relay_outbox_oldest_pending_seconds)", "{{instance}}")],
        threshold=above(TARGET_SECONDS)), width=8)
    board.add(timeseries_panel(
        "Dead letters waiting", "Dead letters kept for a replay, per receiver.", "short",
        [Query(f"sum by (receiver) (relay_dead_letters{{{RECEIVER}}})", "{{receiver}}")]), width=8)


def storm_row(board: Board) -> None:
    board.row("Storms")
    board.add(timeseries_panel(
        "In a storm", "1 while relay folds a receiver's backlog into summaries: more waits than its rate lets out "
        "within its storm window (routes.yaml storm:).", "none",
        [Query(f"max by (receiver) (relay_storm_active{{{RECEIVER}}})", "{{receiver}}")], maximum=1), width=12)
    board.add(timeseries_panel(
        "Folded into summaries", "Notifications delivered in a storm's summary instead of on their own, per "
        "second; each is listed in relay's history under its summary.", "ops",
        [Query(f"sum by (receiver) (rate(relay_notifications_coalesced_total{{{RECEIVER}}}[{RATE}]))",
               "{{receiver}}")], stacked=True), width=12)


def ingest_row(board: Board) -> None:
    board.row("Ingest and dedup")
    board.add(timeseries_panel(
        "Webhook requests by code", "Alertmanager's webhook posts per second by HTTP status: 4xx is bad input or "
        "auth, 503 a store that could not commit (Alertmanager retries).", "reqps",
        [Query(f"sum by (code) (rate(relay_webhook_requests_total[{RATE}]))", "{{code}}")]), width=6)
    board.add(timeseries_panel(
        "Alerts received", "Alerts in accepted webhooks per second, firing and resolved.", "ops",
        [Query(f"sum by (status) (rate(relay_alerts_received_total[{RATE}]))", "{{status}}")]), width=6)
    board.add(timeseries_panel(
        "Dedup ratio", "Duplicates suppressed per alert received: (receiver, alert) pairs not notified again "
        "because the receiver already heard of them (HA Alertmanager pairs, re-sent groups). An alert routed to "
        "three receivers and suppressed for all three counts three, so this can exceed 100%.", "percentunit",
        [Query(f"sum(rate(relay_notifications_deduplicated_total{{{RECEIVER}}}[{RATE}])) / "
               f"sum(rate(relay_alerts_received_total[{RATE}]))", "suppressed per alert")]), width=6)
    board.add(timeseries_panel(
        "Enqueued and suppressed by receiver", "Notifications enqueued, and duplicates suppressed, per receiver.",
        "ops",
        [Query(f"sum by (receiver) (rate(relay_notifications_total{{{SEL}}}[{RATE}]))", "enqueued {{receiver}}"),
         Query(f"sum by (receiver) (rate(relay_notifications_deduplicated_total{{{RECEIVER}}}[{RATE}]))",
               "suppressed {{receiver}}")]), width=6)


def config_row(board: Board) -> None:
    board.row("Configuration")
    board.add(timeseries_panel(
        "Last reload successful", "1 when the last routes.yaml reload (SIGHUP, POST /-/reload, file change) "
        "succeeded, per replica.", "none",
        [Query("max by (instance) (relay_config_last_reload_successful)", "{{instance}}")], threshold=below(1),
        maximum=1), width=8)
    board.add(timeseries_panel(
        "Since last successful load", "Time since routes.yaml was last loaded successfully, per replica.", "s",
        [Query("time() - max by (instance) (relay_config_last_reload_success_timestamp_seconds)", "{{instance}}")]),
        width=8)
    board.add(table_panel(
        "Versions running", "Replicas per relay version (relay_build_info): two rows mean a rollout in progress.",
        "short", [Query("count by (version) (relay_build_info)")]), width=8)


def heartbeat_row(board: Board) -> None:
    board.row("Heartbeat")
    board.add(stat_panel(
        "Heartbeats", "Each configured heartbeat (routes.yaml heartbeats:, e.g. the Watchdog): missing means relay "
        "has told its receivers that Prometheus or Alertmanager may be down.", "none",
        [Query("max by (heartbeat) (relay_heartbeat_missing)", "{{heartbeat}}")],
        mappings=state("arriving", "missing", bad="1"), thresholds=above(1), no_value="none configured",
        graph=False), width=8)
    board.add(timeseries_panel(
        "Since last heartbeat", "Time since each heartbeat last arrived (as the store knows it, shared by "
        "replicas); relay reports it missing past its max_silence.", "s",
        [Query("time() - max by (heartbeat) (relay_heartbeat_last_seen_timestamp_seconds > 0)", "{{heartbeat}}")]),
        width=16)


def build() -> Board:
    board = Board("relay", "relay / Alert delivery",
                  "relay's delivery of Alertmanager notifications to Slack, email and PagerDuty: latency against "
                  "the plan's 1-minute target, outcomes, outbox, storms, dedup, configuration and heartbeats.",
                  ["relay", "alerting"])
    board.variable("receiver", "Receiver", "label_values(relay_outbox_pending, receiver)")
    board.variable("integration", "Integration", "label_values(relay_notification_requests_total, integration)")
    for row in (now_row, latency_row, outcomes_row, outbox_row, storm_row, ingest_row, config_row, heartbeat_row):
        row(board)
    return board
