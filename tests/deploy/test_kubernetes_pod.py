"""relay started from each rendered Deployment (see `pod.py`): read-only root, uid 10001, the Secret's values.

It answers the probes and the ServiceMonitor's scrape on the port the manifests name, takes a webhook with
the token from the Secret and delivers it to the suite's Slack server, reloads a ConfigMap the kubelet swaps
(and keeps serving when the new routes are broken), and stops on SIGTERM within the pod's grace period.
The postgres overlay runs its replicas on one fresh database: an HA pair's copy of a group notifies once.
"""

from __future__ import annotations

import contextlib
import re
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Providers
from tests.deploy.kube import Resource, container, one, overlay
from tests.deploy.pod import Pod, configmaps, sandbox_problem
from tests.helpers import fixture, poll_until, postgres_database
from tests.requirements import KUBECTL

pytestmark = KUBECTL.unless(sandbox_problem())

TOKEN = "k8s-webhook-token-SECRET"
ADMIN_TOKEN = "k8s-admin-token-SECRET"
HASH = re.compile(r"^relay_config_hash (\S+)$", re.M)
RELOADED = re.compile(r"^relay_config_last_reload_successful (\S+)$", re.M)


@pytest.fixture
def pod_root() -> Iterator[Path]:
    """A folder uid 10001 can reach (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="relay-pod-") as tmp:
        Path(tmp).chmod(0o755)
        yield Path(tmp)


def relay_secret(providers: Providers) -> dict[str, str]:
    """What `kubectl create secret generic relay` would hold; no PagerDuty key (optional: relay starts)."""
    return {"RELAY_WEBHOOK_TOKEN": TOKEN, "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "SLACK_WEBHOOK_URL": providers.slack.url(), "SMTP_SMARTHOST": providers.smtp.smarthost,
            "SMTP_REQUIRE_TLS": "false", "OPS_EMAIL": "ops@ojeomneo.example"}


@contextlib.asynccontextmanager
async def running(resources: list[Resource], root: Path, secrets: dict[str, dict[str, str]]) -> AsyncIterator[
        list[Pod]]:
    """Every replica of the Deployment, started as the kubelet would start it; SIGTERM-ed at the end."""
    deployment = one(resources, "Deployment", "relay")
    startup = container(deployment)["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    pods = [Pod(deployment, root / f"pod-{i}", configmaps(resources), secrets)
            for i in range(deployment["spec"]["replicas"])]
    try:
        for pod in pods:
            await pod.start(timeout=min(budget, 30))
        yield pods
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for pod in pods:
            code, took = await pod.stop()
            # uvicorn re-raises the SIGTERM once its shutdown is complete: the kubelet sees a normal stop.
            log = pod.log.read_text()
            assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in log, log[-3000:]
            assert took < grace, f"relay took {took:.1f}s to stop; the kubelet SIGKILLs after {grace}s"
    finally:
        for pod in pods:
            pod.kill()


async def answers_probes_and_scrape(pod: Pod) -> str:
    relay = container(pod.deployment)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = relay[probe]["httpGet"]
        answer = await pod.get(get["path"], get["port"])
        assert answer.status_code == 200, f"{probe} {get['path']}: {answer.status_code} {answer.text}"
    metrics = await pod.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert RELOADED.search(metrics.text)[1] == "1.0"  # type: ignore[index]
    return metrics.text


async def post(pod: Pod, body: object, token: str | None = TOKEN) -> httpx.Response:
    """POST as Alertmanager does, naming the Service (docs/kubernetes.md: http://relay.relay.svc:8080/webhook)."""
    service = one(overlay("sqlite"), "Service", "relay")["metadata"]
    headers = {"Host": f"{service['name']}.{service['namespace']}.svc:8080"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=pod.url, timeout=10) as client:
        return await client.post("/webhook", json=body, headers=headers)


async def test_sqlite_deployment(pod_root: Path, providers: Providers) -> None:
    resources = overlay("sqlite")
    async with running(resources, pod_root, {"relay": relay_secret(providers)}) as [pod]:
        before = await answers_probes_and_scrape(pod)
        assert "receiver pagerduty-oncall is unconfigured" in pod.log.read_text()
        assert (await post(pod, fixture("firing-highlatency-group2.json"), token=None)).status_code == 401
        answer = await post(pod, fixture("firing-highlatency-group2.json"))  # warning: Slack only
        assert answer.status_code == 200, answer.text
        [message] = await providers.slack.wait_for(1)
        assert "HighLatency" in str(message)
        database = pod.mounts["/data"] / "relay.db"
        assert database.exists() and database.stat().st_uid == 10001

        # ReadWriteOnce still lets a second pod on the same node mount the volume (a RollingUpdate, a copy of
        # the Deployment): relay's lock on the file refuses it before it touches a lease.
        deployment = one(resources, "Deployment", "relay")
        second = Pod(deployment, pod_root / "second", configmaps(resources), {"relay": relay_secret(providers)},
                     claims={"relay-data": pod.mounts["/data"]})
        code, printed = await second.exits(timeout=30)
        assert code != 0 and "is in use by another relay" in printed, printed
        assert "Traceback" not in printed

        # `kubectl apply -k` after an edit of routes.yaml: the kubelet swaps the ConfigMap's files.
        routes = configmaps(resources)["relay-routes"]["routes.yaml"]
        edited = routes.replace("default_receivers: [slack-alerts]", "default_receivers: [ops-email]")
        assert edited != routes
        pod.configmap_volumes["routes"].update({"routes.yaml": edited})

        async def reloaded() -> bool:
            text = (await pod.get("/metrics")).text
            return HASH.search(text)[1] != HASH.search(before)[1]  # type: ignore[index]

        await poll_until(reloaded, timeout=15, interval=0.2)
        pod.configmap_volumes["routes"].update({"routes.yaml": edited + "\nroutes: [\n"})
        await poll_until(lambda: "refused, keeping the last good one" in pod.log.read_text(), timeout=15)
        assert RELOADED.search((await pod.get("/metrics")).text)[1] == "0.0"  # type: ignore[index]
        assert (await pod.get("/readyz")).status_code == 200


async def test_postgres_deployment(pod_root: Path, providers: Providers) -> None:
    resources = overlay("postgres")
    async with postgres_database() as url:
        secrets = {"relay": relay_secret(providers), "relay-database": {"url": url}}
        async with running(resources, pod_root, secrets) as pods:
            assert len(pods) == 2
            for pod in pods:
                await answers_probes_and_scrape(pod)
                assert not pod.writable or all(not any(d.iterdir()) for d in pod.writable)
            body = fixture("firing-highlatency-group2.json")
            first, second = [await post(pod, body) for pod in pods]  # an HA Alertmanager pair, one replica each
            assert first.status_code == second.status_code == 200
            assert second.json()["alerts_deduplicated"] == len(body["alerts"])
            [message] = await providers.slack.wait_for(1)
            assert "HighLatency" in str(message)


async def test_templates_component_overrides_one_part(pod_root: Path, providers: Providers) -> None:
    """With the component, the ConfigMap's slack-title.j2 is the title relay sends; the other parts stay."""
    resources = overlay("sqlite", ("templates",))
    with_edit = [dict(r) for r in resources]
    templates = next(r for r in with_edit if r["metadata"]["name"] == "relay-templates")
    templates["data"] = {"slack-title.j2": "K8S-OVERRIDE " + templates["data"]["slack-title.j2"]}
    async with running(with_edit, pod_root, {"relay": relay_secret(providers)}) as [pod]:
        await answers_probes_and_scrape(pod)
        assert (await post(pod, fixture("firing-highlatency-group2.json"))).status_code == 200
        [message] = await providers.slack.wait_for(1)
        assert "K8S-OVERRIDE :red_circle: [FIRING:2] HighLatency" in str(message)
        assert "*P95 &gt; 2s*" in str(message["attachments"])  # the alert part is still the default
