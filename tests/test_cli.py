"""The `relay` command as a user runs it: serve's refusals, test-alert over HTTP and --direct, templates render."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.conftest import Providers
from tests.fakes.smtp import free_port
from tests.helpers import FIXTURES, REPO, TEMPLATES, poll_until, relay_settings, repo_routes, running_relay


async def run_relay(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_serve_refuses_a_public_address_without_token(tmp_path: Path) -> None:
    code, out = await run_relay("serve", env={"RELAY_HOST": "0.0.0.0", "RELAY_WEBHOOK_TOKEN": "",
                                              "RELAY_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    assert code == 2
    assert "refusing to listen on 0.0.0.0 without RELAY_WEBHOOK_TOKEN" in out


async def test_serve_refuses_a_broken_routes_file_with_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "routes.yaml"
    broken.write_text((REPO / "routes.yaml").read_text().replace("receivers: [slack-alerts]\n\ndefault",
                                                                  "receivers: [slack-alertz]\n\ndefault"))
    code, out = await run_relay("serve", env={"RELAY_ROUTES": str(broken), "RELAY_TEMPLATES": str(TEMPLATES)})
    assert code == 1
    lines = broken.read_text().splitlines()
    line = lines.index("    receivers: [slack-alertz]") + 1
    route = sum(text.startswith("  - matchers:") for text in lines[:line])  # 1-based
    assert f"{broken}:{line}: route {route} names unknown receiver 'slack-alertz'" in out


async def test_test_alert_reports_delivery_per_receiver(tmp_path: Path, providers: Providers) -> None:
    env = {**providers.env, "RELAY_WEBHOOK_TOKEN": "tok-SECRET", "RELAY_ADMIN_TOKEN": "adm-SECRET",
           "XDG_STATE_HOME": str(tmp_path / "state")}
    settings = relay_settings(tmp_path, providers.routes, webhook_token="tok-SECRET", admin_token="adm-SECRET")
    async with running_relay(settings) as relay:
        code, out = await run_relay("test-alert", "--alertname", "PodDown", "--severity", "critical",
                                    "--label", "pod=api-0", "--url", relay.url, env=env)
        assert code == 0, out
        for receiver in ("slack-alerts", "ops-email", "pagerduty-oncall"):
            assert f"{receiver}" in out
        assert out.count("delivered in") == 3
        [trigger] = providers.pagerduty.events
        code, out = await run_relay("test-alert", "--alertname", "PodDown", "--severity", "critical",
                                    "--label", "pod=api-0", "--url", relay.url, "--resolve", env=env)
        assert code == 0, out
    resolve = providers.pagerduty.events[1]
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", trigger["dedup_key"])
    assert "tok-SECRET" not in out and "adm-SECRET" not in out


async def test_test_alert_direct_delivers_in_process(tmp_path: Path, providers: Providers) -> None:
    env = {**providers.env, "XDG_STATE_HOME": str(tmp_path), "RELAY_ROUTES": str(providers.routes),
           "RELAY_TEMPLATES": str(TEMPLATES), "RELAY_DATABASE_URL": f"sqlite:///{tmp_path / 'direct.db'}",
           "RELAY_RATE_LIMITS": "false"}
    code, out = await run_relay("test-alert", "--direct", "--severity", "warning", env=env)
    assert code == 0, out
    assert "slack-alerts" in out and "delivered in" in out
    [message] = providers.slack.messages
    assert "RelayTestAlert" in str(message)


async def test_test_alert_shows_dead_letters(tmp_path: Path, providers: Providers) -> None:
    routes = repo_routes(tmp_path)
    env = {**providers.env, "XDG_STATE_HOME": str(tmp_path), "SLACK_WEBHOOK_URL": "", "RELAY_ROUTES": str(routes),
           "RELAY_TEMPLATES": str(TEMPLATES),
           "RELAY_DATABASE_URL": f"sqlite:///{tmp_path / 'direct.db'}"}
    code, out = await run_relay("test-alert", "--direct", env=env)
    assert code == 1
    assert "slack-alerts" in out and "dead-lettered: unconfigured" in out


RENDER_ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/WEBHOOKSECRET",
              "PAGERDUTY_ROUTING_KEY": "ROUTINGKEYSECRET", "SMTP_PASSWORD": "SMTPSECRET",
              "RELAY_ROUTES": str(REPO / "routes.yaml"), "RELAY_TEMPLATES": str(TEMPLATES)}


def calls(out: str) -> list[tuple[str, str]]:
    """The `# what` lines of `templates render` and the text after each."""
    parts = re.split(r"^# (.*)$", out, flags=re.MULTILINE)
    return list(zip(parts[1::2], (p.strip() for p in parts[2::2]), strict=True))


async def test_templates_render_prints_what_each_integration_sends_without_secrets() -> None:
    poddown = str(FIXTURES / "firing-poddown.json")
    code, slack = await run_relay("templates", "render", "--receiver", "slack-alerts", "--fixture", poddown,
                                  env=RENDER_ENV)
    assert code == 0, slack
    [(what, body)] = calls(slack)
    assert what.startswith("POST to the incoming webhook")
    message = json.loads(body)
    assert message["blocks"][0]["text"]["text"] == ":red_circle: [FIRING:1] PodDown (critical)"
    assert message["channel"] == "#ojeomneo-alerts"

    code, pagerduty = await run_relay("templates", "render", "--receiver", "pagerduty-oncall", "--fixture", poddown,
                                      "--resolve", env=RENDER_ENV)
    assert code == 0, pagerduty
    [event] = json.loads(calls(pagerduty)[0][1])
    assert event["event_action"] == "resolve" and len(event["dedup_key"]) == 32

    code, mail = await run_relay("templates", "render", "--receiver", "ops-email", "alertname=DiskFull",
                                 "severity=critical", "namespace=결제", "--annotation", "summary=디스크 95%",
                                 env=RENDER_ENV)
    assert code == 0, mail
    message = message_from_string(calls(mail)[0][1], policy=policy.default)
    assert message["Subject"] == "[FIRING:1] DiskFull 결제 (critical)"
    text = message.get_body(("plain",))
    assert isinstance(text, EmailMessage) and "디스크 95%" in text.get_content()
    for out in (slack, pagerduty, mail):
        for secret in ("WEBHOOKSECRET", "ROUTINGKEYSECRET", "SMTPSECRET"):
            assert secret not in out


async def test_templates_render_refuses_unknown_receivers_and_bad_input(tmp_path: Path) -> None:
    code, out = await run_relay("templates", "render", "--receiver", "nobody", "a=b", env=RENDER_ENV)
    assert code == 1 and "no receiver 'nobody'" in out and "slack-alerts" in out
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": "4"}')
    code, out = await run_relay("templates", "render", "--receiver", "ops-email", "--fixture", str(broken),
                                env=RENDER_ENV)
    assert code == 1 and "cannot read" in out


async def test_routes_check_renders_every_receivers_templates(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "pagerduty" / "summary.j2").write_text("{{ alert.labels.pod | int + 'x' }}")
    code, out = await run_relay("routes", "check", env={**RENDER_ENV, "RELAY_TEMPLATES": str(templates)})
    assert code == 1
    assert "receiver pagerduty-oncall (firing): template: pagerduty/summary.j2: TypeError" in out


async def test_receivers_on_routes_yaml_defaults_are_named_and_test_alert_does_not_wait_for_them(
        tmp_path: Path, providers: Providers, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A new user with no SMTP server set: the repository's routes.yaml sends email to its placeholder smarthost
    and recipient. `routes check`, the start log and test-alert say so, and test-alert does not sit out its
    timeout on an email that will be retried for hours."""
    refused = f"127.0.0.1:{free_port()}"  # nothing listens there, like localhost:587 on a laptop
    routes = tmp_path / "routes.yaml"
    routes.write_text(providers.routes.read_text().replace("${SMTP_SMARTHOST:-localhost:587}",
                                                           f"${{SMTP_SMARTHOST:-{refused}}}"))
    env = {**providers.env, "SMTP_SMARTHOST": "", "OPS_EMAIL": "", "RELAY_ROUTES": str(routes),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    code, out = await run_relay("routes", "check", env=env)
    assert code == 0
    assert (f"warning: receiver ops-email sends to defaults: email.to is the routes.yaml default "
            f"ops@ojeomneo.example (OPS_EMAIL unset); email.smarthost is the routes.yaml default {refused} "
            "(SMTP_SMARTHOST unset)") in out
    assert "slack-alerts" not in out  # set from the environment

    monkeypatch.delenv("SMTP_SMARTHOST")
    monkeypatch.delenv("OPS_EMAIL")
    async with running_relay(relay_settings(tmp_path, routes)) as relay:
        assert "receiver ops-email sends to routes.yaml defaults: email.to is" in caplog.text  # at start
        started = time.monotonic()
        code, out = await run_relay("test-alert", "--severity", "critical", "--timeout", "60", "--url", relay.url,
                                    env=env)
        took = time.monotonic() - started
    assert code == 1 and "slack-alerts" in out and "delivered in" in out
    assert "ops-email                retrying (attempts " in out and "connection" in out
    assert "warning: it sends to email.to is the routes.yaml default ops@ojeomneo.example" in out
    assert took < 30, out  # not the 60 s timeout: a placeholder's failure is reported, not waited out


def test_the_suite_keeps_test_alerts_memory_out_of_the_real_home() -> None:
    from relay.cli.testalert import state_file

    real_home = Path(os.path.expanduser("~")).resolve()
    assert not state_file().resolve().is_relative_to(real_home / ".local")
    assert os.environ["XDG_STATE_HOME"] and state_file().is_relative_to(os.environ["XDG_STATE_HOME"])


async def test_resolve_closes_the_last_alert_relay_accepted_whatever_its_severity(
        tmp_path: Path, providers: Providers) -> None:
    """Fire a critical, then a warning relay never gets (unreachable) and a --direct refused while relay serve holds
    the file: a plain --resolve closes the critical, with its startsAt, and not a warning that never fired."""
    env = {**providers.env, "XDG_STATE_HOME": str(tmp_path / "state")}
    settings = relay_settings(tmp_path, providers.routes)
    code, out = await run_relay("test-alert", "--resolve", env=env)
    assert code == 2 and "no firing test alert to resolve" in out and "relay test-alert" in out, out
    async with running_relay(settings) as relay:
        code, out = await run_relay("test-alert", "--severity", "critical", "--url", relay.url, env=env)
        assert code == 0, out
        fired = re.search(r"startsAt (\S+)\)", out)
        assert fired
        code, out = await run_relay("test-alert", "--url", f"http://127.0.0.1:{free_port()}", env=env)
        assert code == 1 and "cannot reach relay" in out, out
        assert "(cannot connect): is `relay serve` running? it listens on RELAY_HOST:RELAY_PORT" in out, out
        from relay.store.filelock import lock_database

        held = lock_database(settings.database_url)  # as `relay serve` holds it
        try:
            code, out = await run_relay("test-alert", "--direct", env={
                **env, "RELAY_DATABASE_URL": settings.database_url, "RELAY_ROUTES": str(providers.routes)})
        finally:
            if held is not None:
                held.release()
        assert code == 1 and "without --direct" in out, out
        code, out = await run_relay("test-alert", "--resolve", "--url", relay.url, env=env)
        assert code == 0, out
        assert "resolved test alert RelayTestAlert (severity=critical" in out
        assert f"startsAt {fired[1]})" in out
        history = (await relay.client.get("/api/v1/notifications", params={"receiver": "slack-alerts"})).json()
        assert [n["status"] for n in history["notifications"]] == ["resolved", "firing"]
        code, out = await run_relay("test-alert", "--resolve", "--url", relay.url, env=env)
        assert code == 2 and "no firing test alert to resolve" in out, out  # that one is closed now
    resolved = [m for m in providers.slack.messages if "RESOLVED" in str(m)]
    assert len(resolved) == 1 and "RelayTestAlert" in str(resolved[0])


async def test_a_single_alert_email_shows_its_severity_and_labels() -> None:
    """An alert with only a name and a severity: the subject and both bodies say how bad it is and what it is."""
    code, out = await run_relay("templates", "render", "--receiver", "ops-email", "alertname=DiskFull",
                                "severity=critical", "--annotation", "summary=Disk 95%", env=RENDER_ENV)
    assert code == 0, out
    message = message_from_string(out.split("\n", 1)[1], policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "[FIRING:1] DiskFull (critical)"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "[FIRING] Disk 95% (critical)\n  Labels: alertname=DiskFull, severity=critical\n" in text.get_content()
    assert "<td>alertname=DiskFull<br>severity=critical</td>" in html.get_content()


async def test_serve_says_where_it_listens_its_store_routes_receivers_and_heartbeat(
        tmp_path: Path, providers: Providers) -> None:
    """The start log's last word is relay's own: the URL, the store, the routes file and each receiver's state,
    and whether the heartbeat is armed (not before a first Watchdog; armed after one, across a restart)."""
    from tests.e2e.process import RelayProcess
    from tests.e2e.test_routing_table import webhook

    env = {**providers.env, "PAGERDUTY_ROUTING_KEY": ""}
    relay = RelayProcess(tmp_path, providers.routes, env)

    async def said(count: int) -> list[str]:
        await poll_until(lambda: relay.log.read_text().count("relay listens on") == count)
        return [line for line in relay.log.read_text().splitlines() if "relay listens on" in line]

    await relay.start()
    try:
        [line] = await said(1)
        assert line.endswith(
            f"relay listens on {relay.url} (webhook {relay.url}/webhook); store SQLite {tmp_path / 'relay.db'}; "
            f"routes {providers.routes}: receivers slack-alerts, ops-email, pagerduty-oncall (unconfigured: "
            "routing_key unset); heartbeat watchdog not armed until the first Watchdog arrives"), line
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{relay.url}/webhook", json=webhook("Watchdog", "none"))
        assert answer.json()["heartbeats"] == ["watchdog"]
    finally:
        await relay.terminate()
    await relay.start()
    try:
        line = (await said(2))[-1]
        assert line.endswith("; heartbeat watchdog armed (pages if none arrives for 5m)"), line
    finally:
        await relay.terminate()


async def test_a_label_argument_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """`relay routes test pod=$'a\\xff'`: Python keeps the byte as a lone surrogate, which the RE2 matchers cannot
    encode; it was a UnicodeEncodeError traceback, now a usage error in one line."""
    env = {"RELAY_ROUTES": str(REPO / "routes.yaml"), "RELAY_TEMPLATES": str(TEMPLATES)}
    code, out = await run_relay("routes", "test", "alertname=X", "pod=a\udcff", env=env, cwd=tmp_path)
    assert code == 2 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1] == "relay: labels are UTF-8 text, got b'pod=a\\xff'"
