"""The monitoring plan's metrics on loopback, named as the real exporters name them, with values a test sets.

One `/metrics` endpoint stands in for every target a kube-prometheus-stack
Prometheus scrapes for the plan (the Go API, kube-state-metrics, cAdvisor,
postgres_exporter, redis_exporter), so one scrape job fills a test Prometheus
with the series the rules and dashboards query.  Counters are computed from the
clock: each grows at a per-second rate derived from the current values, so
``rate()`` in Prometheus returns exactly those rates, and changing a value never
makes a counter go down.

Usage::

    with PlanExporter() as exporter:       # or exporter.start() ... exporter.stop()
        exporter.url                       # "http://127.0.0.1:PORT/metrics"
        exporter.healthy()                 # every alert of the plan well under its threshold (the start state)
        exporter.breach("HighLatency")     # healthy, except exactly one of ALERTS over its threshold
        exporter.idle()                    # healthy, but no HTTP requests, no Redis reads, no orders
        exporter.set(error_ratio=0.04)     # any PlanValues field, on top of the current values
        exporter.values                    # a copy of the current PlanValues

`breach(name)` accepts the seven names of `ALERTS`. Thread-safe; the server
runs in a daemon thread, so it works from sync and async tests alike.

Series (labels in braces; ``namespace="ojeomneo"`` unless said otherwise):

- Go API (scraped per pod, so ``namespace``, ``service``, ``pod`` are in the
  exposition as a ServiceMonitor would attach them; ``service="ojeomneo-api"``,
  two pods sharing the traffic):
  ``ojeomneo_http_requests_total{code,method,handler}`` counter (codes 200/201,
  404 by ``client_error_ratio``, 500 by ``error_ratio``) and
  ``ojeomneo_http_request_duration_seconds{method,handler}`` histogram (Go
  client default buckets 5 ms .. 10 s; ``slow_ratio`` of requests take
  ``slow_latency_seconds``, the rest ``latency_seconds``).  Handlers:
  GET /api/v1/menus, GET /api/v1/recommendations, GET /api/v1/restaurants,
  POST /api/v1/orders.
- Business (same labels as the Go API): ``ojeomneo_orders_total{status}``
  counter (status completed|cancelled, ``orders_per_second``, 5% cancelled),
  ``ojeomneo_signups_total`` counter (``signups_per_second``),
  ``ojeomneo_active_users`` gauge (``active_users``; users with a session in
  the last 5 minutes), ``ojeomneo_recommendations_total{result}`` counter
  (result accepted|rejected, twice the request rate of GET
  /api/v1/recommendations' share, 60% accepted).
- kube-state-metrics: ``kube_deployment_spec_replicas{namespace,deployment}`` and
  ``kube_deployment_status_replicas_available{namespace,deployment}`` for
  deployments ojeomneo-api (2), ojeomneo-admin (1); ``kube_pod_container_resource_limits
  {namespace,pod,container,node,resource="memory",unit="byte"}`` (512 MiB api, 1 GiB admin);
  ``kube_pod_container_status_restarts_total{namespace,pod,container}`` (0).
- cAdvisor: ``container_memory_working_set_bytes{namespace,pod,container}``
  (``memory_ratio`` of each limit; ``hot_memory_ratio`` for the first api pod
  when set) and ``container_cpu_usage_seconds_total{namespace,pod,container}``
  (``cpu_cores`` per container).
- postgres_exporter: ``pg_up``, ``pg_settings_max_connections`` (``max_connections``),
  ``pg_stat_activity_count{datname,state}`` summing to ``db_connections``
  (ojeomneo: active / idle / idle in transaction, postgres: idle; the other
  states present at 0, as the exporter reports them).
- redis_exporter: ``redis_up``, ``redis_keyspace_hits_total``,
  ``redis_keyspace_misses_total`` (``redis_reads_per_second`` split by
  ``redis_hit_ratio``), ``redis_memory_used_bytes``, ``redis_memory_max_bytes``
  (0 means no maxmemory), ``redis_connected_clients``, ``redis_db_keys{db="db0"}``,
  ``redis_commands_processed_total``.

What each breach changes (everything else healthy): HighErrorRate 10% 5xx;
HighLatency 10% of requests at 3 s (p95 about 3.75 s); PodDown ojeomneo-api
available 0 of 2; HighMemory first api pod at 90% of its limit;
DBConnectionExhausted 95 of 100 connections; RedisCacheHitLow hit ratio 50%;
RedisMemoryHigh 90% of maxmemory.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

ALERTS = ("HighErrorRate", "HighLatency", "PodDown", "HighMemory", "DBConnectionExhausted", "RedisCacheHitLow",
          "RedisMemoryHigh")
NAMESPACE = "ojeomneo"
API_SERVICE = "ojeomneo-api"
API_PODS = ("ojeomneo-api-6d5f8b7c9-x2k4q", "ojeomneo-api-6d5f8b7c9-p7m3z")
ADMIN_POD = "ojeomneo-admin-5b8c6d4f7-q9w2e"
DEPLOYMENTS = {"ojeomneo-api": 2, "ojeomneo-admin": 1}
MEMORY_LIMITS = {API_PODS[0]: ("api", 512 * 2**20), API_PODS[1]: ("api", 512 * 2**20),
                 ADMIN_POD: ("admin", 2**30)}
# (method, handler, share of requests, success code)
HANDLERS = (("GET", "/api/v1/menus", 0.4, "200"), ("GET", "/api/v1/recommendations", 0.3, "200"),
            ("GET", "/api/v1/restaurants", 0.2, "200"), ("POST", "/api/v1/orders", 0.1, "201"))
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MIB = 2**20


@dataclass(frozen=True)
class PlanValues:
    """What the exporter reports; rates are per second."""

    requests_per_second: float = 20.0
    error_ratio: float = 0.002
    client_error_ratio: float = 0.02
    latency_seconds: float = 0.04
    slow_ratio: float = 0.01
    slow_latency_seconds: float = 0.3
    available_replicas: tuple[tuple[str, int], ...] = tuple(DEPLOYMENTS.items())
    memory_ratio: float = 0.45
    hot_memory_ratio: float | None = None
    cpu_cores: float = 0.15
    db_connections: int = 20
    max_connections: int = 100
    redis_reads_per_second: float = 50.0
    redis_hit_ratio: float = 0.95
    redis_memory_used_bytes: float = 200 * MIB
    redis_memory_max_bytes: float = 1024 * MIB
    orders_per_second: float = 0.5
    signups_per_second: float = 0.05
    active_users: float = 120.0


HEALTHY = PlanValues()
IDLE = dataclasses.replace(HEALTHY, requests_per_second=0.0, redis_reads_per_second=0.0, orders_per_second=0.0,
                           signups_per_second=0.0, active_users=0.0)
BREACHES: dict[str, dict[str, Any]] = {
    "HighErrorRate": {"error_ratio": 0.10},
    "HighLatency": {"slow_ratio": 0.10, "slow_latency_seconds": 3.0},
    "PodDown": {"available_replicas": (("ojeomneo-api", 0), ("ojeomneo-admin", 1))},
    "HighMemory": {"hot_memory_ratio": 0.90},
    "DBConnectionExhausted": {"db_connections": 95},
    "RedisCacheHitLow": {"redis_hit_ratio": 0.50},
    "RedisMemoryHigh": {"redis_memory_used_bytes": 0.9 * 1024 * MIB},
}

Key = tuple[str, tuple[tuple[str, str], ...]]


class _Counters:
    """Monotonic counters that grow at set rates: a value is frozen whenever the rates change."""

    def __init__(self) -> None:
        self._values: dict[Key, float] = {}
        self._rates: dict[Key, float] = {}
        self._since = time.time()

    def retarget(self, rates: dict[Key, float]) -> None:
        now = time.time()
        for key in set(self._values) | set(rates):
            self._values[key] = self._value(key, now)
        self._rates = dict(rates)
        self._since = now

    def _value(self, key: Key, now: float) -> float:
        return self._values.get(key, 0.0) + self._rates.get(key, 0.0) * (now - self._since)

    def snapshot(self) -> dict[Key, float]:
        now = time.time()
        return {key: self._value(key, now) for key in set(self._values) | set(self._rates)}


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _http_rates(v: PlanValues) -> dict[Key, float]:
    """Requests by code and latency class for each API pod and handler."""
    rates: dict[Key, float] = {}
    per_pod = v.requests_per_second / len(API_PODS)
    ok_ratio = max(0.0, 1 - v.error_ratio - v.client_error_ratio)
    classes = ((v.latency_seconds, 1 - v.slow_ratio), (v.slow_latency_seconds, v.slow_ratio))
    for pod in API_PODS:
        for method, handler, share, ok_code in HANDLERS:
            base = {"pod": pod, "method": method, "handler": handler}
            rate = per_pod * share
            for code, ratio in ((ok_code, ok_ratio), ("404", v.client_error_ratio), ("500", v.error_ratio)):
                rates[("requests", _labels(code=code, **base))] = rate * ratio
            for latency, ratio in classes:
                key = ("latency", _labels(latency=repr(latency), **base))
                rates[key] = rates.get(key, 0.0) + rate * ratio
        orders = v.orders_per_second / len(API_PODS)
        rates[("orders", _labels(pod=pod, status="completed"))] = orders * 0.95
        rates[("orders", _labels(pod=pod, status="cancelled"))] = orders * 0.05
        rates[("signups", _labels(pod=pod))] = v.signups_per_second / len(API_PODS)
        recommendations = 2 * per_pod * HANDLERS[1][2]
        rates[("recommendations", _labels(pod=pod, result="accepted"))] = recommendations * 0.6
        rates[("recommendations", _labels(pod=pod, result="rejected"))] = recommendations * 0.4
    return rates


def _rates(v: PlanValues) -> dict[Key, float]:
    rates = _http_rates(v)
    for pod, (container, _) in MEMORY_LIMITS.items():
        rates[("cpu", _labels(pod=pod, container=container))] = v.cpu_cores
    reads = v.redis_reads_per_second
    rates[("redis_hits", ())] = reads * v.redis_hit_ratio
    rates[("redis_misses", ())] = reads * (1 - v.redis_hit_ratio)
    rates[("redis_commands", ())] = reads * 1.5
    return rates


class _PlanCollector(Collector):
    def __init__(self, exporter: PlanExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        values, counts = self._exporter._state()
        yield from _app_metrics(values, counts)
        yield from _kubernetes_metrics(values, counts)
        yield from _postgres_metrics(values)
        yield from _redis_metrics(values, counts)


def _by_kind(counts: dict[Key, float], kind: str) -> Iterator[tuple[dict[str, str], float]]:
    for (name, labels), value in sorted(counts.items()):
        if name == kind:
            yield dict(labels), value


def _app_metrics(v: PlanValues, counts: dict[Key, float]) -> Iterator[Metric]:
    target = ["namespace", "service", "pod"]
    requests = CounterMetricFamily("ojeomneo_http_requests", "HTTP requests served.",
                                   labels=[*target, "code", "method", "handler"])
    for labels, value in _by_kind(counts, "requests"):
        requests.add_metric([NAMESPACE, API_SERVICE, labels["pod"], labels["code"], labels["method"],
                             labels["handler"]], value)
    yield requests
    yield _histogram(counts, target)
    for kind, name, doc, label in (("orders", "ojeomneo_orders", "Orders placed, by final status.", "status"),
                                   ("recommendations", "ojeomneo_recommendations",
                                    "Lunch recommendations shown, by whether the user took them.", "result"),
                                   ("signups", "ojeomneo_signups", "New user sign-ups.", None)):
        family = CounterMetricFamily(name, doc, labels=[*target, *([label] if label else [])])
        for labels, value in _by_kind(counts, kind):
            family.add_metric([NAMESPACE, API_SERVICE, labels["pod"], *([labels[label]] if label else [])], value)
        yield family
    users = GaugeMetricFamily("ojeomneo_active_users", "Users with a session active in the last 5 minutes.",
                              labels=target)
    for pod in API_PODS:
        users.add_metric([NAMESPACE, API_SERVICE, pod], v.active_users / len(API_PODS))
    yield users


def _histogram(counts: dict[Key, float], target: list[str]) -> Metric:
    family = HistogramMetricFamily("ojeomneo_http_request_duration_seconds", "HTTP request latency.",
                                   labels=[*target, "method", "handler"])
    series: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for labels, value in _by_kind(counts, "latency"):
        series.setdefault((labels["pod"], labels["method"], labels["handler"]), []).append(
            (float(labels["latency"]), value))
    for (pod, method, handler), observed in sorted(series.items()):
        buckets = [(repr(le), sum(n for latency, n in observed if latency <= le)) for le in BUCKETS]
        total = sum(n for _, n in observed)
        buckets.append(("+Inf", total))
        family.add_metric([NAMESPACE, API_SERVICE, pod, method, handler], buckets,
                          sum(latency * n for latency, n in observed))
    return family


def _kubernetes_metrics(v: PlanValues, counts: dict[Key, float]) -> Iterator[Metric]:
    spec = GaugeMetricFamily("kube_deployment_spec_replicas", "Number of desired pods for a deployment.",
                             labels=["namespace", "deployment"])
    available = GaugeMetricFamily("kube_deployment_status_replicas_available",
                                  "The number of available replicas per deployment.",
                                  labels=["namespace", "deployment"])
    for deployment, replicas in DEPLOYMENTS.items():
        spec.add_metric([NAMESPACE, deployment], replicas)
    for deployment, replicas in v.available_replicas:
        available.add_metric([NAMESPACE, deployment], replicas)
    yield spec
    yield available
    limits = GaugeMetricFamily("kube_pod_container_resource_limits", "The number of requested limit resource.",
                               labels=["namespace", "pod", "container", "node", "resource", "unit"])
    restarts = CounterMetricFamily("kube_pod_container_status_restarts", "The number of container restarts.",
                                   labels=["namespace", "pod", "container"])
    memory = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set in bytes.",
                               labels=["namespace", "pod", "container"])
    for pod, (container, limit) in MEMORY_LIMITS.items():
        limits.add_metric([NAMESPACE, pod, container, "node-1", "memory", "byte"], limit)
        restarts.add_metric([NAMESPACE, pod, container], 0)
        ratio = v.hot_memory_ratio if pod == API_PODS[0] and v.hot_memory_ratio is not None else v.memory_ratio
        memory.add_metric([NAMESPACE, pod, container], round(ratio * limit))
    yield limits
    yield restarts
    yield memory
    cpu = CounterMetricFamily("container_cpu_usage_seconds", "Cumulative cpu time consumed in seconds.",
                              labels=["namespace", "pod", "container"])
    for labels, value in _by_kind(counts, "cpu"):
        cpu.add_metric([NAMESPACE, labels["pod"], labels["container"]], value)
    yield cpu


def _postgres_metrics(v: PlanValues) -> Iterator[Metric]:
    yield GaugeMetricFamily("pg_up", "Whether the last scrape of PostgreSQL was able to connect.", value=1)
    yield GaugeMetricFamily("pg_settings_max_connections", "Server Parameter: max_connections",
                            value=v.max_connections)
    activity = GaugeMetricFamily("pg_stat_activity_count", "number of connections in this state",
                                 labels=["datname", "state"])
    active = max(1, v.db_connections // 4)
    in_transaction = v.db_connections // 10
    reserved = 1  # the exporter's own connection to the postgres database
    idle = max(0, v.db_connections - active - in_transaction - reserved)
    for datname, state, count in (("ojeomneo", "active", active), ("ojeomneo", "idle", idle),
                                  ("ojeomneo", "idle in transaction", in_transaction),
                                  ("ojeomneo", "idle in transaction (aborted)", 0),
                                  ("ojeomneo", "fastpath function call", 0), ("ojeomneo", "disabled", 0),
                                  ("postgres", "idle", reserved)):
        activity.add_metric([datname, state], count)
    yield activity


def _redis_metrics(v: PlanValues, counts: dict[Key, float]) -> Iterator[Metric]:
    yield GaugeMetricFamily("redis_up", "Information about the Redis instance", value=1)
    for kind, name, doc in (("redis_hits", "redis_keyspace_hits", "keyspace_hits metric"),
                            ("redis_misses", "redis_keyspace_misses", "keyspace_misses metric"),
                            ("redis_commands", "redis_commands_processed", "commands_processed metric")):
        yield CounterMetricFamily(name, doc, value=counts.get((kind, ()), 0.0))
    yield GaugeMetricFamily("redis_memory_used_bytes", "memory_used_bytes metric", value=v.redis_memory_used_bytes)
    yield GaugeMetricFamily("redis_memory_max_bytes", "memory_max_bytes metric", value=v.redis_memory_max_bytes)
    yield GaugeMetricFamily("redis_connected_clients", "connected_clients metric", value=12)
    keys = GaugeMetricFamily("redis_db_keys", "Total number of keys by DB", labels=["db"])
    keys.add_metric(["db0"], 5000)
    yield keys


class PlanExporter:
    """A /metrics endpoint on 127.0.0.1 (a free port unless given) serving the plan's series; see the module doc."""

    def __init__(self, port: int = 0, values: PlanValues = HEALTHY) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._values = values
        self._counters = _Counters()
        self._counters.retarget(_rates(values))
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_PlanCollector(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> PlanExporter:
        server, thread = start_http_server(self._port, addr="127.0.0.1", registry=self._registry)
        self._server, self._thread = server, thread
        self.url = f"http://127.0.0.1:{server.server_port}/metrics"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PlanExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def target(self) -> str:
        """host:port, as a Prometheus static_config names it."""
        return self.url.removeprefix("http://").removesuffix("/metrics")

    @property
    def values(self) -> PlanValues:
        with self._lock:
            return self._values

    def set(self, **changes: Any) -> None:
        """Change some PlanValues fields, keeping the others; counters keep growing from where they are."""
        with self._lock:
            self._values = dataclasses.replace(self._values, **changes)
            self._counters.retarget(_rates(self._values))

    def _replace(self, values: PlanValues) -> None:
        with self._lock:
            self._values = values
            self._counters.retarget(_rates(values))

    def healthy(self) -> None:
        self._replace(HEALTHY)

    def idle(self) -> None:
        self._replace(IDLE)

    def breach(self, alertname: str) -> None:
        """Healthy values except the one that pushes `alertname` (one of ALERTS) over its threshold."""
        if alertname not in BREACHES:
            raise ValueError(f"unknown alert {alertname!r}; one of {', '.join(ALERTS)}")
        self._replace(dataclasses.replace(HEALTHY, **BREACHES[alertname]))

    def _state(self) -> tuple[PlanValues, dict[Key, float]]:
        with self._lock:
            return self._values, self._counters.snapshot()
