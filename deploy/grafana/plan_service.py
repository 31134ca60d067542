"""The plan's service dashboards: Overview (is ojeomneo up and fast) and API Performance (which handler is not).

Metrics as the plan's exporters name them: the Go API's ojeomneo_http_*,
kube-state-metrics' kube_*, cAdvisor's container_*, Prometheus' own ALERTS.
Thresholds are the plan's alert thresholds (5% 5xx, p95 2 s, 0 pods, 80% memory); the SLO panels read the
recording rules of deploy/prometheus/rules.yml.
"""

from __future__ import annotations

from panels import (
    RED,
    YELLOW,
    Board,
    Query,
    above,
    below,
    heatmap_panel,
    stat_panel,
    steps,
    table_panel,
    timeseries_panel,
)

RATE = "$__rate_interval"
NS = 'namespace="$namespace"'
HTTP = "ojeomneo_http_requests_total"
DURATION = "ojeomneo_http_request_duration_seconds"
AVAILABILITY = 0.999  # the availability objective of deploy/prometheus/rules.yml (thresholds only)
ERROR_RATIO = 0.05  # HighErrorRate
LATENCY_P95 = 2  # HighLatency, seconds
MEMORY_RATIO = 0.8  # HighMemory


def plan_board(uid: str, title: str, description: str, namespace_from: str) -> Board:
    """A plan dashboard with its namespace picker and a menu of the other plan dashboards."""
    board = Board(uid, f"ojeomneo / {title}", description, ["ojeomneo"])
    board.variable("namespace", "Namespace", f"label_values({namespace_from}, namespace)", include_all=False)
    board.link_tag("ojeomneo", "ojeomneo dashboards")
    return board


def error_ratio(selector: str, by: str = "", window: str = RATE, codes: str = "5..") -> str:
    """Share of requests answered `codes`; 0, not "no data", while no request ever got such an answer."""
    grouping = f"sum by ({by}) " if by else "sum"
    errors = f'{grouping}(rate({HTTP}{{{selector}, code=~"{codes}"}}[{window}]))'
    total = f"{grouping}(rate({HTTP}{{{selector}}}[{window}]))"
    return f"({errors} or {total} * 0) / {total}"


def latency(quantile: float, selector: str, by: str = "", window: str = RATE) -> str:
    grouping = f"le, {by}" if by else "le"
    return f"histogram_quantile({quantile}, sum by ({grouping}) (rate({DURATION}_bucket{{{selector}}}[{window}])))"


def latency_quantiles(selector: str) -> list[Query]:
    return [Query(latency(q, selector), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)]


def overview() -> Board:
    board = plan_board("ojeomneo-overview", "Overview", "The service at a glance: traffic, errors, latency, pods, "
                       "memory, firing alerts and the availability objective.", HTTP)
    board.row("Service")
    board.add(stat_panel("Request rate", "API requests per second, all pods.", "reqps",
                         [Query(f"sum(rate({HTTP}{{{NS}}}[{RATE}]))")]), width=4, height=5)
    board.add(stat_panel("5xx ratio", "Share of API requests answered 5xx; HighErrorRate fires above 5% for 5m.",
                         "percentunit", [Query(error_ratio(NS))], thresholds=above(ERROR_RATIO)), width=4, height=5)
    board.add(stat_panel("p95 latency", "95th percentile of API request duration; HighLatency fires above 2 s for "
                         "5m.", "s", [Query(latency(0.95, NS))], thresholds=above(LATENCY_P95)), width=4, height=5)
    board.add(stat_panel("Pods available", "Available replicas per deployment; PodDown fires at 0 for 1m.", "short",
                         [Query(f"sum by (deployment) (kube_deployment_status_replicas_available{{{NS}}})",
                                "{{deployment}}")], thresholds=steps((None, RED), (1, "green")), graph=False),
              width=4, height=5)
    board.add(stat_panel("Firing alerts", "Alerts firing in this namespace (Prometheus ALERTS).", "short",
                         [Query(f'count(ALERTS{{alertstate="firing", {NS}}})')], thresholds=above(1), no_value="0",
                         graph=False), width=4, height=5)
    board.add(stat_panel("Availability (30d)", f"Share of requests not answered 5xx over 30 days (recording rule "
                         f"of deploy/prometheus/rules.yml), against the {AVAILABILITY:.1%} objective.", "percentunit",
                         [Query(f"min(ojeomneo:slo_availability:ratio_rate30d{{{NS}}})")],
                         thresholds=below(AVAILABILITY), decimals=3, graph=False), width=4, height=5)

    board.row("Traffic and errors")
    board.add(timeseries_panel("Requests by code", "API requests per second by HTTP status code.", "reqps",
                               [Query(f"sum by (code) (rate({HTTP}{{{NS}}}[{RATE}]))", "{{code}}")], stacked=True),
              width=8)
    board.add(timeseries_panel("5xx ratio", "Share of requests answered 5xx; the dashed line is HighErrorRate's 5%.",
                               "percentunit", [Query(error_ratio(NS), "5xx")], threshold=above(ERROR_RATIO)), width=8)
    board.add(timeseries_panel("Latency", "API request duration quantiles; the dashed line is HighLatency's 2 s.",
                               "s", latency_quantiles(NS), threshold=above(LATENCY_P95)), width=8)

    board.row("SLO")
    board.add(timeseries_panel(
        "Availability vs objective (30d)", "The availability and API SLIs over 30 days, per service, with their "
        "objectives (ojeomneo:slo_objective:ratio), all recorded by deploy/prometheus/rules.yml.", "percentunit",
        [Query(f"ojeomneo:slo_availability:ratio_rate30d{{{NS}}}", "availability {{service}}"),
         Query(f"ojeomneo:slo_api:ratio_rate30d{{{NS}}}", "api {{service}}"),
         Query('ojeomneo:slo_objective:ratio{slo=~"availability|api"}', "objective {{slo}}")], minimum=None),
        width=8)
    board.add(timeseries_panel(
        "Error budget left (30d)", f"Share of the 30-day availability error budget ({1 - AVAILABILITY:.1%} of "
        "requests may fail) not yet spent; below 0 the objective is missed. The budget-burn alerts fire long "
        "before.", "percentunit",
        [Query(f"ojeomneo:slo_availability_error_budget_remaining:ratio30d{{{NS}}}", "{{service}}")],
        threshold=below(0.25, YELLOW), minimum=None), width=8)
    board.add(timeseries_panel(
        "Availability (5m)", "The availability SLI over the last 5 minutes: what the fast burn-rate alert watches.",
        "percentunit", [Query(f"ojeomneo:slo_availability:ratio_rate5m{{{NS}}}", "{{service}}")],
        threshold=below(AVAILABILITY), minimum=None), width=8)

    board.row("Pods")
    board.add(timeseries_panel(
        "Replicas available vs desired", "Per deployment: available replicas (solid) and the desired count.",
        "short", [Query(f"sum by (deployment) (kube_deployment_status_replicas_available{{{NS}}})",
                        "available {{deployment}}"),
                  Query(f"sum by (deployment) (kube_deployment_spec_replicas{{{NS}}})", "desired {{deployment}}")]),
        width=8)
    board.add(timeseries_panel(
        "Memory vs limit", "Working set of each container over its memory limit; the dashed line is HighMemory's "
        "80%.", "percentunit",
        [Query(f'sum by (pod, container) (container_memory_working_set_bytes{{{NS}, container!="", container!="POD"}})'
               f' / sum by (pod, container) (kube_pod_container_resource_limits{{{NS}, resource="memory"}})',
               "{{pod}} {{container}}")], threshold=above(MEMORY_RATIO)), width=8)
    board.add(timeseries_panel(
        "CPU", "CPU cores used per container.", "short",
        [Query(f'sum by (pod, container) (rate(container_cpu_usage_seconds_total{{{NS}, container!=""}}[{RATE}]))',
               "{{pod}} {{container}}")]), width=8)
    board.add(table_panel(
        "Firing alerts", "Every alert firing in this namespace, by name and severity.", "short",
        [Query(f'count by (alertname, severity) (ALERTS{{alertstate="firing", {NS}}})')]), width=16)
    board.add(timeseries_panel(
        "Container restarts (1h)", "Restarts per container in the last hour: a crash loop shows here before PodDown.",
        "short", [Query(f"sum by (pod, container) (increase(kube_pod_container_status_restarts_total{{{NS}}}[1h]))",
                        "{{pod}} {{container}}")]), width=8)
    return board


def api() -> Board:
    board = plan_board("ojeomneo-api", "API Performance", "The Go API per handler: traffic, error ratios, latency "
                       "quantiles and distribution, the slowest handlers.", HTTP)
    board.variable("handler", "Handler", f"label_values({HTTP}{{{NS}}}, handler)")
    sel = f'{NS}, handler=~"$handler"'

    board.row("Traffic")
    board.add(timeseries_panel("Requests by handler", "Requests per second per handler and method.", "reqps",
                               [Query(f"sum by (method, handler) (rate({HTTP}{{{sel}}}[{RATE}]))",
                                      "{{method}} {{handler}}")]), width=12)
    board.add(timeseries_panel("Requests by code", "Requests per second by HTTP status code.", "reqps",
                               [Query(f"sum by (code) (rate({HTTP}{{{sel}}}[{RATE}]))", "{{code}}")], stacked=True),
              width=12)

    board.row("Errors")
    board.add(timeseries_panel("5xx ratio by handler", "Share of each handler's requests answered 5xx; the dashed "
                               "line is HighErrorRate's 5%.", "percentunit",
                               [Query(error_ratio(sel, "handler"), "{{handler}}")], threshold=above(ERROR_RATIO)),
              width=12)
    board.add(timeseries_panel("4xx ratio by handler", "Share of each handler's requests answered 4xx (client "
                               "errors: a broken client or a changed API).", "percentunit",
                               [Query(error_ratio(sel, "handler", codes="4.."), "{{handler}}")]), width=12)

    board.row("Latency")
    board.add(timeseries_panel("Latency", "Request duration quantiles over the selected handlers; the dashed line is "
                               "HighLatency's 2 s.", "s", latency_quantiles(sel), threshold=above(LATENCY_P95)),
              width=12)
    board.add(timeseries_panel("p95 by handler", "95th percentile of request duration per handler.", "s",
                               [Query(latency(0.95, sel, "handler"), "{{handler}}")], threshold=above(LATENCY_P95)),
              width=12)
    board.add(heatmap_panel("Latency distribution", "Requests per duration bucket over time.", "s",
                            Query(f"sum by (le) (increase({DURATION}_bucket{{{sel}}}[$__interval]))", "{{le}}")),
              width=12)
    board.add(timeseries_panel("Faster than 250 ms", "Share of each handler's requests that took under 250 ms.",
                               "percentunit",
                               [Query(f'sum by (handler) (rate({DURATION}_bucket{{{sel}, le="0.25"}}[{RATE}])) / '
                                      f"sum by (handler) (rate({DURATION}_count{{{sel}}}[{RATE}]))", "{{handler}}")],
                               maximum=1), width=6)
    board.add(table_panel("Slowest handlers (p95, 5m)", "The ten handlers with the highest p95 over the last five "
                          "minutes.", "s",
                          [Query(f"topk(10, {latency(0.95, sel, 'method, handler', window='5m')})")]), width=6)
    return board
