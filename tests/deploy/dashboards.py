"""The committed Grafana dashboards as a test sees them: their queries and variables, Grafana's macros filled in,
and the metric names each query reads; plus a real Prometheus (Debian's) on loopback to run them against."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.process import free_port
from tests.helpers import REPO, poll_until
from tests.requirements import ALERTMANAGER

GRAFANA = REPO / "deploy" / "grafana"
PLAN_RULES = REPO / "deploy" / "prometheus" / "rules.yml"  # the plan's alerts and SLO recording rules
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
# Grafana's interval macros as the tests fill them in: windows that hold several 1 s scrapes.
MACROS = {"$__rate_interval": "10s", "$__interval": "5s", "$__range": "1h"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                "group_right", "inf", "nan"}


def need(binary: str | None, name: str) -> str:
    """The binary's path; skip without it, except in CI (.ci/run installs Debian's prometheus)."""
    if binary is None:
        ALERTMANAGER.missing(f"needs Debian's {name} (apt-get install prometheus)")
    return binary


@dataclass(frozen=True)
class Target:
    """One panel query of one dashboard."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}: {self.expr}"


@dataclass(frozen=True)
class Variable:
    name: str
    metric_selector: str  # the first argument of label_values(...)
    label: str
    all_value: str | None  # what "All" stands for, None when the variable has no "All"


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(path: Path) -> list[Target]:
    board = load(path)
    return [Target(board["uid"], panel["title"], target["refId"], target["expr"], bool(target.get("instant")))
            for panel in panels(board) for target in panel.get("targets", []) if target.get("expr")]


def variables(path: Path) -> list[Variable]:
    """The dashboard's query variables, in order (a later one may use an earlier one)."""
    found = []
    for variable in load(path).get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
        assert match, f"{path.name}: variable {variable['name']} is not label_values(metric, label)"
        found.append(Variable(variable["name"], match[1], match[2],
                              variable.get("allValue") if variable.get("includeAll") else None))
    return found


def expand(expr: str, values: dict[str, str]) -> str:
    """`expr` with Grafana's macros and the dashboard's variables replaced; nothing Grafana-only may remain."""
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in expr, f"unknown template variable left in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords, labels or strings)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        if match[0].lower() in PROMQL_WORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(match[0])
    return names


def recorded_names(rules: Path) -> set[str]:
    """The series a rule file records, which dashboards may read like any scraped metric."""
    groups = yaml.safe_load(rules.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def exposed_names(exposition: str) -> set[str]:
    """Sample names in a /metrics page: what a query can select (`_bucket`, `_total`, ... included)."""
    return {re.match(r"[A-Za-z_:][\w:]*", line)[0]  # type: ignore[index]
            for line in exposition.splitlines() if line and not line.startswith("#")}


def finite(result: dict[str, Any]) -> bool:
    """Whether a query API answer holds at least one number a panel would draw (not empty, not NaN)."""
    values: list[tuple[float, str]] = []
    for series in result["data"]["result"]:
        values.extend(series.get("values") or [series["value"]])
    return any(value not in ("NaN", "+Inf", "-Inf") for _, value in values)


@dataclass
class Prometheus:
    url: str
    client: httpx.AsyncClient

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        answer = await self.client.get(f"{self.url}{path}", params=params)
        assert answer.status_code == 200, f"{path} {params}: {answer.status_code} {answer.text}"
        return dict(answer.json())

    async def label_values(self, selector: str, label: str) -> list[str]:
        return list((await self.get(f"/api/v1/label/{label}/values", **{"match[]": selector}))["data"])

    async def has(self, expr: str) -> bool:
        return bool((await self.get("/api/v1/query", query=expr))["data"]["result"])

    async def scraped_since(self, moment: float, scrapes: int = 1) -> bool:
        """Whether every target was scraped `scrapes` times since `moment` (1 s interval), successfully."""
        # timestamp() gives a sample's time only applied to a selector; on `up == 1` it gives the query's time.
        answer = await self.get("/api/v1/query", query="min(timestamp(up)) and on() min(up) == 1")
        result = answer["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= moment + scrapes - 1


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, jobs: dict[str, dict[str, Any]], rule_files: list[Path]) -> AsyncIterator[
        Prometheus]:
    """Debian's prometheus on loopback, scraping each job's static target every second, evaluating the rules."""
    binary = need(PROMETHEUS, "prometheus")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(path) for path in rule_files],
              "scrape_configs": [{"job_name": name, **job} for name, job in jobs.items()]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", stdout=log, stderr=log)
    async with httpx.AsyncClient(timeout=10) as client:

        async def ready() -> bool:
            if proc.returncode is not None:
                raise RuntimeError(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
            try:
                return (await client.get(f"{url}/-/ready", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await poll_until(ready, timeout=20, interval=0.1)
            yield Prometheus(url, client)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
