"""The plan's test exporter: counters grow at the set rates and never go down, breaches change what they say."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.exporters.plan import ALERTS, PlanExporter


def scrape(exporter: PlanExporter) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(exporter.url, timeout=5).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


def test_counters_grow_at_the_set_rate_and_a_change_never_lowers_them() -> None:
    with PlanExporter() as exporter:
        first, started = scrape(exporter), time.time()
        time.sleep(0.5)
        second, elapsed = scrape(exporter), time.time() - started
        rate = (total(second, "ojeomneo_http_requests_total") - total(first, "ojeomneo_http_requests_total")) / elapsed
        assert rate == pytest.approx(20.0, rel=0.15)
        errors = total(second, "ojeomneo_http_requests_total", code="500")
        exporter.idle()
        third = scrape(exporter)
        assert total(third, "ojeomneo_http_requests_total", code="500") >= errors
        time.sleep(0.2)
        fourth = scrape(exporter)
        for name in ("ojeomneo_http_requests_total", "redis_keyspace_hits_total", "ojeomneo_orders_total"):
            assert total(fourth, name) == pytest.approx(total(third, name), abs=1e-6)
        assert total(fourth, "container_cpu_usage_seconds_total") > total(third, "container_cpu_usage_seconds_total")


def test_each_breach_moves_its_own_series() -> None:
    with PlanExporter() as exporter:
        healthy = scrape(exporter)
        for alertname in ALERTS:
            exporter.breach(alertname)
            now = scrape(exporter)
            if alertname == "PodDown":
                assert total(now, "kube_deployment_status_replicas_available", deployment="ojeomneo-api") == 0
            if alertname == "DBConnectionExhausted":
                assert total(now, "pg_stat_activity_count") == 95 > total(healthy, "pg_stat_activity_count")
            if alertname == "RedisMemoryHigh":
                assert total(now, "redis_memory_used_bytes") > 0.8 * total(now, "redis_memory_max_bytes")
        with pytest.raises(ValueError, match="unknown alert"):
            exporter.breach("NoSuchAlert")
