"""The Grafana dashboards of deploy/grafana/: generated from code, provisionable by kube-prometheus-stack's sidecar,
valid PromQL on metrics that exist, and every panel showing data from a real Prometheus scraping relay and the
plan's exporters."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from relay.alerts.fingerprint import fingerprint
from tests.conftest import Providers
from tests.deploy.dashboards import (
    DASHBOARDS,
    GRAFANA,
    PLAN_RULES,
    PROMTOOL,
    Prometheus,
    expand,
    exposed_names,
    finite,
    load,
    metric_names,
    need,
    panels,
    prometheus,
    recorded_names,
    targets,
    variables,
)
from tests.deploy.kube import render
from tests.e2e.process import RelayProcess
from tests.exporters.plan import NAMESPACE, PlanExporter
from tests.helpers import poll_until, repo_routes
from tests.test_heartbeat import heartbeat_section, watchdog

RELAY = [p for p in DASHBOARDS if p.stem == "relay"]
PLAN = [p for p in DASHBOARDS if p.stem.startswith("ojeomneo-")]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# An alert that fires at once in the plan's namespace, so the panels reading ALERTS have one to show.
PROBE_RULES = {"groups": [{"name": "dashboard-probe", "rules": [{
    "alert": "DashboardProbe", "expr": "max by (namespace) (kube_deployment_spec_replicas) > 0",
    "labels": {"severity": "info"}}]}]}


def test_the_committed_json_is_what_the_generator_writes(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    generated = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS}
    assert sorted(generated) == sorted(committed) == sorted(
        ["relay.json", "ojeomneo-overview.json", "ojeomneo-api.json", "ojeomneo-database.json",
         "ojeomneo-cache.json", "ojeomneo-business.json"])
    stale = [name for name in generated if generated[name] != committed[name]]
    assert not stale, f"edited by hand or not regenerated (python deploy/grafana/generate.py): {stale}"


def overlapping(boxes: list[tuple[str, dict[str, int]]]) -> list[str]:
    cells: dict[tuple[int, int], str] = {}
    clashes = []
    for title, box in boxes:
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                if (x, y) in cells:
                    clashes.append(f"{title} over {cells[(x, y)]}")
                cells[(x, y)] = title
    return sorted(set(clashes))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_each_dashboard_reads_prometheus_through_its_datasource_variable(path: Path) -> None:
    """What makes it load in any Grafana (kube-prometheus-stack's names its Prometheus data source itself)."""
    board = load(path)
    assert board["uid"] == path.stem and board["title"]
    [datasource] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert (datasource["name"], datasource["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    shown = [p for p in panels(board) if p["type"] != "row"]
    assert shown
    for panel in shown:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
        assert panel["description"] and panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    assert not overlapping([(p["title"], p["gridPos"]) for p in panels(board)])


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each panel query and each variable's selector, wrapped as a recording rule."""
    promtool = need(PROMTOOL, "promtool")
    groups = []
    for path in DASHBOARDS:
        values = {v.name: v.all_value or NAMESPACE for v in variables(path)}
        exprs = [expand(t.expr, values) for t in targets(path)]
        exprs += [expand(v.metric_selector, values) for v in variables(path)]
        name = path.stem.replace("-", "_")
        groups.append({"name": path.stem, "rules": [
            {"record": f"dashboard:{name}:{i}", "expr": expr} for i, expr in enumerate(exprs)]})
    rules = tmp_path / "dashboards.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{sum(len(g['rules']) for g in groups)} rules found" in done.stdout


def test_kustomize_renders_one_sidecar_configmap_per_dashboard() -> None:
    import kubernetes_validate  # type: ignore[import-untyped]
    from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

    rendered = render(GRAFANA)
    assert {r["kind"] for r in rendered} == {"ConfigMap"}
    by_file = {name: r for r in rendered for name in r["data"]}
    assert sorted(by_file) == sorted(p.name for p in DASHBOARDS) and len(rendered) == len(DASHBOARDS)
    newest = all_versions()[-1]
    for path in DASHBOARDS:
        configmap = by_file[path.name]
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # what the sidecar watches for
        assert configmap["metadata"]["name"] == f"grafana-dashboard-{path.stem}"  # no hash suffix: stable
        assert json.loads(configmap["data"][path.name]) == load(path)
        # `kubectl apply` keeps the whole object in an annotation limited to 256 KiB.
        assert len(json.dumps(configmap)) < 256 * 1024
        kubernetes_validate.validate(configmap, newest, strict=True)


def routes_with_heartbeat(tmp_path: Path, providers: Providers) -> Path:
    """The repository's routes.yaml with its Watchdog heartbeat example switched on."""
    return repo_routes(tmp_path, providers.pagerduty.url, extra=heartbeat_section())


def alert(alertname: str, severity: str, **labels: str) -> dict[str, Any]:
    """An Alertmanager webhook with one alert that fired just now."""
    labels = {"alertname": alertname, "severity": severity, "namespace": NAMESPACE, **labels}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    one = {"status": "firing", "labels": labels, "annotations": {"summary": alertname}, "startsAt": now,
           "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint(labels)}
    return {"receiver": "relay", "status": "firing", "alerts": [one], "groupLabels": {"alertname": alertname},
            "commonLabels": labels, "commonAnnotations": one["annotations"], "externalURL": "http://am:9093",
            "version": "4", "groupKey": f'{{}}:{{alertname="{alertname}"}}', "truncatedAlerts": 0}


async def deliver_round(relay: RelayProcess, providers: Providers, round_no: int) -> None:
    """What fills every relay panel: a page to all three integrations through one 429, a warning Slack refuses
    for good (a dead letter), the page again from the HA twin (deduplicated), and the Watchdog (a heartbeat)."""
    async with httpx.AsyncClient(base_url=relay.url, timeout=10) as client:
        providers.slack.respond_with(429, headers={"Retry-After": "0"})
        page = alert("PodDown", "critical", pod=f"api-{round_no}")
        assert (await client.post("/webhook", json=page)).status_code == 200
        await providers.slack.wait_for(round_no + 1)
        await providers.smtp.wait_for(round_no + 1)
        await providers.pagerduty.wait_for(round_no + 1)
        providers.slack.respond_with(404)
        assert (await client.post("/webhook", json=alert("HighLatency", "warning", pod=f"api-{round_no}"))
                ).status_code == 200

        async def dead_lettered() -> bool:
            text = (await client.get("/metrics")).text
            return f'relay_dead_letters{{receiver="slack-alerts"}} {round_no + 1}.0' in text

        await poll_until(dead_lettered, timeout=10, interval=0.05)
        answer = await client.post("/webhook", json=page)
        assert answer.json()["alerts_deduplicated"] == 3
        assert (await client.post("/webhook", json=watchdog())).status_code == 200


async def test_relay_panels_read_only_metrics_relay_exports(tmp_path: Path, providers: Providers) -> None:
    relay = RelayProcess(tmp_path, routes_with_heartbeat(tmp_path, providers), providers.env)
    await relay.start()
    try:
        await deliver_round(relay, providers, 0)
        exposition = httpx.get(f"{relay.url}/metrics", timeout=10).text
    finally:
        await relay.terminate()
    used = set().union(*(metric_names(t.expr) for p in RELAY for t in targets(p)),
                       *(metric_names(v.metric_selector) for p in RELAY for v in variables(p)))
    assert {"relay_delivery_latency_seconds_bucket", "relay_alert_to_delivery_seconds_bucket",
            "relay_outbox_pending", "relay_config_last_reload_successful"} <= used
    assert sorted(used - exposed_names(exposition)) == []


def test_plan_panels_read_only_what_the_plan_exporters_and_rules_provide() -> None:
    with PlanExporter() as exporter:
        exposition = httpx.get(exporter.url, timeout=10).text
    used = set().union(*(metric_names(t.expr) for p in PLAN for t in targets(p)),
                       *(metric_names(v.metric_selector) for p in PLAN for v in variables(p)))
    assert {"ojeomneo_http_requests_total", "pg_stat_activity_count", "redis_keyspace_hits_total",
            "kube_deployment_status_replicas_available", "ojeomneo_orders_total", "ALERTS"} <= used
    recorded = recorded_names(PLAN_RULES)
    assert "ojeomneo:slo_availability:ratio_rate30d" in used & recorded
    assert sorted(used - exposed_names(exposition) - recorded - {"ALERTS"}) == []  # ALERTS is Prometheus' own


async def test_every_panel_shows_data_from_a_real_prometheus(tmp_path: Path, providers: Providers) -> None:
    """Prometheus scrapes a relay that delivered, failed, dead-lettered and deduplicated, and the plan's exporters,
    and evaluates the plan's rules; each variable then offers values and each query, as Grafana sends it, returns
    a number."""
    relay = RelayProcess(tmp_path, routes_with_heartbeat(tmp_path, providers), providers.env)
    await relay.start()
    started = time.time()
    try:
        with PlanExporter() as exporter:
            jobs: dict[str, dict[str, Any]] = {
                "relay": {"static_configs": [{"targets": [relay.url.removeprefix("http://")]}]},
                # A ServiceMonitor attaches the target's namespace; series that carry their own keep it.
                "plan": {"honor_labels": True,
                         "static_configs": [{"targets": [exporter.target], "labels": {"namespace": NAMESPACE}}]}}
            probe = tmp_path / "probe.yml"
            probe.write_text(yaml.safe_dump(PROBE_RULES))
            async with prometheus(tmp_path, jobs, [PLAN_RULES, probe]) as prom:
                await poll_until(lambda: prom.scraped_since(started), timeout=20, interval=0.2)
                for round_no in range(2):  # the second round moves counters the first one created
                    await deliver_round(relay, providers, round_no)
                    await poll_until(functools.partial(prom.scraped_since, time.time(), round_no + 1), timeout=20,
                                     interval=0.2)
                await poll_until(lambda: prom.has('ALERTS{alertstate="firing"}'), timeout=20, interval=0.2)
                failures = [failure for path in DASHBOARDS for failure in await empty_panels(prom, path, started)]
    finally:
        await relay.terminate()
    assert not failures, "no data:\n" + "\n".join(failures)


async def empty_panels(prom: Prometheus, path: Path, since: float) -> list[str]:
    """Each variable and query of one dashboard that shows nothing, with the default selection ("All", or the first
    value) as a person opening the dashboard would see it."""
    failures: list[str] = []
    values: dict[str, str] = {}
    for variable in variables(path):
        offered = await prom.label_values(expand(variable.metric_selector, values), variable.label)
        if not offered:
            failures.append(f"{path.stem}: variable {variable.name} offers no value")
        values[variable.name] = variable.all_value if variable.all_value is not None else sorted(offered or [""])[0]
    now = time.time()
    for target in targets(path):
        expr = expand(target.expr, values)
        if target.instant:
            answer = await prom.client.get(f"{prom.url}/api/v1/query", params={"query": expr, "time": now})
        else:
            answer = await prom.client.get(f"{prom.url}/api/v1/query_range",
                                           params={"query": expr, "start": since, "end": now, "step": 1})
        if answer.status_code != 200 or not finite(answer.json()):
            failures.append(f"{target} ({answer.status_code}: {answer.text[:200]})")
    return failures
