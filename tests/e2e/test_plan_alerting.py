"""The plan's alerting for real: Debian's Prometheus and an Alertmanager HA pair in front of relay.

Prometheus scrapes tests/exporters/plan.py (and relay's /metrics), evaluates copies of
deploy/prometheus/rules.yml and relay-rules.yml with every `for` cut to 3 s (RelayDown's to 10 s) and every
range window to 5 s, and sends to two clustered Alertmanagers configured from
deploy/alertmanager/alertmanager.yml, with URLs, secret files and timings pointed at this test. The copy of
rules.yml leaves out the SLO group: its burn-rate alerts fire with HighErrorRate's errors by design, and their
hour-to-day windows are promtool's to test (rules.test.yml).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from tests import requirements
from tests.exporters.plan import BREACHES, HEALTHY, PlanExporter
from tests.fakes import FakeHttpServer, read_body
from tests.fakes.pagerduty import PagerDutyServer
from tests.fakes.slack import SlackWebhookServer
from tests.fakes.smtp import SmtpServer
from tests.helpers import REPO, poll_until, provider_env, repo_routes, slack_text
from tests.test_heartbeat import heartbeat_section

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
MISSING = "needs Debian prometheus and prometheus-alertmanager (apt-get install them)"
pytestmark = requirements.ALERTMANAGER.unless(None if PROMETHEUS and ALERTMANAGER else MISSING)

TOKEN = "am-relay-token-SECRET"
DIRECT_ROUTING_KEY = "AMDIRECTR0UTINGKEY00000000000000"
DEADMAN_TOKEN = "deadman-token-SECRET"
RUNBOOK = re.compile(r"https://github\.com/ojeomneo/relay/blob/main/docs/runbooks/(\w+)\.md")
TITLE = re.compile(r"\[(FIRING|RESOLVED)(?::\d+)?\] (\w+)")
WAIT = 45.0


def free_port() -> int:
    from tests.e2e.process import free_port as port

    return port()


# Prometheus hands its static targets to the scrape loop up to 5 s after it starts; until the first scrape,
# absent(up{job=~".*relay.*"}) holds, so RelayDown keeps a `for` longer than that.
FOR = {"RelayDown": "10s"}


def shortened(path: Path, drop_groups: tuple[str, ...] = ()) -> str:
    """A rule file with every `for` at 3 s (but FOR) and every range window at 5 s (scrape and evaluation: 1 s)."""
    rules = yaml.safe_load(re.sub(r"\[\d+[smhd]\]", "[5s]", path.read_text()))
    rules["groups"] = [g for g in rules["groups"] if g["name"] not in drop_groups]
    for rule in (r for g in rules["groups"] for r in g["rules"] if "for" in r):
        rule["for"] = FOR.get(rule["alert"], "3s")
    return yaml.safe_dump(rules, sort_keys=False)


def alertmanager_config(tmp_path: Path, relay_url: str, deadman_url: str, pagerduty_url: str,
                        smarthost: str) -> Path:
    """deploy/alertmanager/alertmanager.yml with this test's URLs, secret files and second-scale timings."""
    secrets = {"relay-webhook-token/token": TOKEN, "pagerduty/routing-key": DIRECT_ROUTING_KEY,
               "deadman/token": DEADMAN_TOKEN, "smtp/password": "unused"}
    text = (REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    for name, value in secrets.items():
        path = tmp_path / "secrets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
        assert f"/etc/alertmanager/secrets/{name}" in text
        text = text.replace(f"/etc/alertmanager/secrets/{name}", str(path))
    assert "http://relay.relay.svc:8080/webhook" in text and "https://deadman.ojeomneo.example/" in text
    text = text.replace("http://relay.relay.svc:8080/webhook", f"{relay_url}/webhook")
    text = text.replace("https://deadman.ojeomneo.example/", f"{deadman_url}/")
    config = yaml.safe_load(text)
    config["global"].update(smtp_smarthost=smarthost, smtp_require_tls=False)
    for key in ("smtp_auth_username", "smtp_auth_password_file"):  # the local SMTP server takes no AUTH
        del config["global"][key]
    route = config["route"]
    route.update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for child in route["routes"]:
        child.update(group_interval="1s")
        if child.get("receiver") == "heartbeat":
            child["repeat_interval"] = "1s"
    [direct] = [r for r in config["receivers"] if r["name"] == "relay-direct"]
    direct["pagerduty_configs"][0]["url"] = pagerduty_url
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class PingSink(FakeHttpServer):
    """The external dead-man's-switch service: records every ping."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/ping/{name}", self._ping)

    async def _ping(self, request: web.Request) -> web.Response:
        body, _ = await read_body(request)
        await self.record(request, body, 200)
        return web.Response(text="OK")


class Server:
    """A Debian server binary on loopback, ready when `/-/ready` answers 200; stop() and start() again."""

    def __init__(self, tmp_path: Path, name: str, binary: str, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        self.command = [binary, *args, f"--web.listen-address=127.0.0.1:{self.port}"]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(*self.command, stdout=log, stderr=log)

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.command[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{self.url}/-/ready", timeout=1)).status_code == 200
            except httpx.HTTPError:
                return False

        await poll_until(ready, timeout=30, interval=0.1)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 20)
        self.proc = None

    async def get(self, path: str, **params: str) -> Any:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{self.url}{path}", params=params, timeout=5)
            answer.raise_for_status()
            return answer.json()


@dataclass
class Pipeline:
    exporter: PlanExporter
    slack: SlackWebhookServer
    smtp: SmtpServer
    pagerduty: PagerDutyServer
    deadman: PingSink
    prometheus: Server
    alertmanagers: list[Server]
    relay: Any  # tests.e2e.process.RelayProcess


@contextlib.asynccontextmanager
async def pipeline(tmp_path: Path, max_silence: str, with_relay_rules: bool) -> AsyncIterator[Pipeline]:
    """Exporter, providers, Alertmanager pair, relay (a process), then Prometheus: relay's heartbeat clock starts
    when relay does, so it must hear the Watchdog within max_silence of its start, as in production."""
    from tests.e2e.process import RelayProcess

    async with SlackWebhookServer() as slack, SmtpServer() as smtp, PagerDutyServer() as pagerduty, \
            PingSink() as deadman:
        relay_port = free_port()
        relay_url = f"http://127.0.0.1:{relay_port}"
        am_config = alertmanager_config(tmp_path, relay_url, deadman.base_url, pagerduty.url, smtp.smarthost)
        cluster = [free_port(), free_port()]
        alertmanagers = [
            Server(tmp_path, f"alertmanager{i}", ALERTMANAGER or "", [
                f"--config.file={am_config}", f"--storage.path={tmp_path / f'am{i}'}",
                f"--cluster.listen-address=127.0.0.1:{cluster[i]}",
                f"--cluster.advertise-address=127.0.0.1:{cluster[i]}",
                f"--cluster.peer=127.0.0.1:{cluster[1 - i]}", "--cluster.gossip-interval=100ms",
                "--cluster.pushpull-interval=1s", "--cluster.peer-timeout=1s"])
            for i in (0, 1)]
        routes = repo_routes(tmp_path, pagerduty.url, extra=heartbeat_section(max_silence=max_silence))
        env = {**provider_env(slack.url(), smtp.smarthost), "RELAY_WEBHOOK_TOKEN": TOKEN}
        relay = RelayProcess(tmp_path, routes, env, port=relay_port)
        with PlanExporter() as exporter:
            rules = tmp_path / "rules"
            rules.mkdir()
            (rules / "rules.yml").write_text(shortened(REPO / "deploy/prometheus/rules.yml", ("ojeomneo.slo",)))
            scrape = [{"job_name": "ojeomneo", "static_configs": [{"targets": [exporter.target]}]}]
            if with_relay_rules:
                (rules / "relay-rules.yml").write_text(shortened(REPO / "deploy/prometheus/relay-rules.yml"))
                scrape.append({"job_name": "relay", "static_configs": [{"targets": [f"127.0.0.1:{relay_port}"]}]})
            prometheus_config = tmp_path / "prometheus.yml"
            prometheus_config.write_text(yaml.safe_dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(p) for p in sorted(rules.glob("*.yml"))],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [a.url[7:] for a in alertmanagers]}]}]},
                "scrape_configs": scrape,
            }))
            # Alerts live 4 x 1 s in Alertmanager after Prometheus' last send, so its death shows in seconds.
            prometheus = Server(tmp_path, "prometheus", PROMETHEUS or "", [
                f"--config.file={prometheus_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                "--rules.alert.resend-delay=1s"])
            try:
                await asyncio.gather(*(a.start() for a in alertmanagers))
                await relay.start()
                await prometheus.start()
                yield Pipeline(exporter, slack, smtp, pagerduty, deadman, prometheus, alertmanagers, relay)
            finally:
                await prometheus.stop()
                if relay.proc is not None:
                    await relay.terminate()
                for alertmanager in alertmanagers:
                    await alertmanager.stop()


def slack_seen(p: Pipeline) -> list[tuple[str, str]]:
    """(status, alertname) of every Slack message, from its title."""
    found = [TITLE.search(message.get("text", "")) for message in p.slack.messages]
    return [(m.group(1), m.group(2)) if m else ("?", slack_text(message)[:80])
            for m, message in zip(found, p.slack.messages, strict=True)]


def mail_seen(p: Pipeline, sender: str = "relay") -> list[tuple[str, str]]:
    found = [(TITLE.search(m.message["Subject"]), m) for m in p.smtp.messages if m.mail_from.startswith(sender)]
    return [(m.group(1), m.group(2)) if m else ("?", mail.message["Subject"]) for m, mail in found]


def mail_text(mail: Any) -> str:
    """Every text part of a mail, decoded (the raw message is quoted-printable or base64)."""
    return "\n".join(part.get_content() for part in mail.message.walk() if part.get_content_maintype() == "text")


async def heartbeat_seen(p: Pipeline) -> bool:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{p.relay.url}/metrics", timeout=5)).text
    found = re.search(r'^relay_heartbeat_last_seen_timestamp_seconds\{heartbeat="watchdog"\} (\S+)$', text, re.M)
    return bool(found and float(found.group(1)) > 0)


async def active_in_prometheus(p: Pipeline, alertname: str) -> bool:
    data = await p.prometheus.get("/api/v1/alerts")
    return any(a["labels"]["alertname"] == alertname for a in data["data"]["alerts"])


async def _not(check: Any) -> bool:
    return not await check


def assert_runbook_links(texts: list[str]) -> None:
    """Every delivered firing message links to its alert's runbook, and the file is there."""
    for text in texts:
        links = set(RUNBOOK.findall(text))
        assert links, f"no runbook link in {text[:200]}"
        for name in links:
            assert (REPO / "docs" / "runbooks" / f"{name}.md").is_file()


async def test_each_plan_alert_reaches_its_destinations_once_and_resolves(tmp_path: Path) -> None:
    async with pipeline(tmp_path, max_silence="20s", with_relay_rules=False) as p:
        await poll_until(lambda: heartbeat_seen(p), timeout=WAIT, interval=0.2)
        assert p.slack.messages == [] and p.smtp.messages == [] and p.pagerduty.events == []

        # Six at once (distinct alertnames, so six groups); PodDown on its own below, since it inhibits two.
        wave = [name for name in BREACHES if name != "PodDown"]
        for name in wave:
            p.exporter.set(**BREACHES[name])
        await p.slack.wait_for(6, timeout=WAIT)
        await p.smtp.wait_for(2, timeout=WAIT)
        assert Counter(slack_seen(p)) == Counter(("FIRING", name) for name in wave)
        assert Counter(mail_seen(p)) == Counter([("FIRING", "HighErrorRate"), ("FIRING", "DBConnectionExhausted")])
        assert_runbook_links([slack_text(m) for m in p.slack.messages] + [mail_text(m) for m in p.smtp.messages])

        p.exporter.healthy()
        await p.slack.wait_for(12, timeout=WAIT)
        await p.smtp.wait_for(4, timeout=WAIT)
        assert Counter(status for status, _ in slack_seen(p)[6:]) == {"RESOLVED": 6}
        assert {name for _, name in slack_seen(p)[6:]} == set(wave)

        # PodDown pages everyone; while it lasts, the same service's HighErrorRate is held back by inhibition.
        p.exporter.breach("PodDown")
        [trigger] = await p.pagerduty.wait_for(1, timeout=WAIT)
        assert trigger["event_action"] == "trigger" and "PodDown" in trigger["payload"]["summary"]
        await p.slack.wait_for(13, timeout=WAIT)
        await p.smtp.wait_for(5, timeout=WAIT)
        p.exporter.set(error_ratio=BREACHES["HighErrorRate"]["error_ratio"])

        async def inhibited_in_both() -> bool:
            for alertmanager in p.alertmanagers:
                alerts = await alertmanager.get("/api/v2/alerts", filter='alertname="HighErrorRate"')
                if not any(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in alerts):
                    return False
            return True

        await poll_until(inhibited_in_both, timeout=WAIT, interval=0.2)
        p.exporter.set(error_ratio=HEALTHY.error_ratio)
        await poll_until(lambda: _not(active_in_prometheus(p, "HighErrorRate")), timeout=WAIT, interval=0.2)
        p.exporter.healthy()
        await p.pagerduty.wait_for(2, timeout=WAIT)
        await p.slack.wait_for(14, timeout=WAIT)
        await p.smtp.wait_for(6, timeout=WAIT)

        # Settled: nothing pending in relay, nothing firing but the Watchdog; then count what arrived.
        async def settled() -> bool:
            for alertmanager in p.alertmanagers:
                alerts = await alertmanager.get("/api/v2/alerts", active="true")
                if {a["labels"]["alertname"] for a in alerts} != {"Watchdog"}:
                    return False
            return True

        await poll_until(settled, timeout=WAIT, interval=0.2)
        assert Counter(slack_seen(p)) == Counter(
            {(status, name): 1 for name in BREACHES for status in ("FIRING", "RESOLVED")})
        assert Counter(mail_seen(p)) == Counter(
            {(status, name): 1 for name in ("HighErrorRate", "DBConnectionExhausted", "PodDown")
             for status in ("FIRING", "RESOLVED")})
        assert [e["event_action"] for e in p.pagerduty.events] == ["trigger", "resolve"]
        assert p.pagerduty.events[1]["dedup_key"] == trigger["dedup_key"]
        assert p.smtp.messages == [m for m in p.smtp.messages if m.mail_from.startswith("relay")]
        # The Watchdog reached the external dead man's switch too, with its token from the file.
        assert p.deadman.requests
        assert {r.headers["Authorization"] for r in p.deadman.requests} == {f"Bearer {DEADMAN_TOKEN}"}


async def test_relay_pages_when_prometheus_stops_and_its_own_alert_bypasses_a_failing_relay(tmp_path: Path) -> None:
    async with pipeline(tmp_path, max_silence="6s", with_relay_rules=True) as p:
        await poll_until(lambda: heartbeat_seen(p), timeout=WAIT, interval=0.2)

        # Dead man's switch: Prometheus stops, the Watchdog stops; relay pages Slack and PagerDuty itself.
        await p.prometheus.stop()
        [page] = await p.pagerduty.wait_for(1, timeout=WAIT)
        assert page["event_action"] == "trigger" and page["routing_key"] != DIRECT_ROUTING_KEY
        [notice] = await p.slack.wait_for(1, timeout=WAIT)
        assert "RelayHeartbeatMissing" in slack_text(notice)
        pings = len(p.deadman.requests)
        await p.prometheus.start()
        await p.pagerduty.wait_for(2, timeout=WAIT)
        assert (p.pagerduty.events[1]["event_action"], p.pagerduty.events[1]["dedup_key"]) == (
            "resolve", page["dedup_key"])
        await p.slack.wait_for(2, timeout=WAIT)
        assert ("RESOLVED", "RelayHeartbeatMissing") in slack_seen(p)
        await poll_until(lambda: len(p.deadman.requests) > pings, timeout=WAIT, interval=0.2)

        # relay's Slack fails: relay's own alert reaches PagerDuty and the ops list straight from Alertmanager.
        p.slack.fail_all(500)
        p.exporter.breach("RedisMemoryHigh")
        direct = await p.pagerduty.wait_for(3, timeout=WAIT)
        assert direct[2]["routing_key"] == DIRECT_ROUTING_KEY
        assert direct[2]["event_action"] == "trigger"
        assert "RelayDeliveriesFailing" in direct[2]["payload"]["summary"]
        assert "slack-alerts" in direct[2]["payload"]["summary"]

        def mailed_directly() -> bool:
            return ("FIRING", "RelayDeliveriesFailing") in mail_seen(p, sender="alertmanager")

        await poll_until(mailed_directly, timeout=WAIT, interval=0.2)
        assert all(r.status == 500 for r in p.slack.requests[-3:])
        p.slack.recover()
