"""deploy/kubernetes: every overlay renders with kubectl, validates offline, and says what relay needs.

What a user would hit on a cluster and these tests catch here: a field the API server refuses, a Service or
ServiceMonitor that selects nothing or names a port that is not there, a probe on a path relay does not serve,
a secret routes.yaml reads but the Deployment never sets, two relays on one SQLite file, a pod that may run as
root or write its image. `test_kubernetes_pod.py` then runs relay the way the rendered Deployment says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, all_versions

from relay.config.settings import Settings
from relay.config.yamlconfig import expand
from tests.deploy import prometheusrule
from tests.deploy.kube import (
    CRD_FILES,
    KUSTOMIZE,
    OVERLAYS,
    VARIANTS,
    Resource,
    container,
    crd_errors,
    one,
    overlay,
)
from tests.deploy.prometheusrule import GENERATED
from tests.helpers import REPO
from tests.requirements import ALERTMANAGER

KUBERNETES_VERSIONS = sorted(set(all_versions()), key=lambda v: tuple(map(int, v.split("."))))
CORE_KINDS = {"ConfigMap", "Deployment", "Service", "PersistentVolumeClaim", "PodDisruptionBudget", "Ingress"}


def test_overlays_are_sqlite_and_postgres() -> None:
    assert OVERLAYS == ["postgres", "sqlite"]


def test_base_routes_is_the_repository_routes() -> None:
    """kustomize reads no file outside its folder (and refuses a symlink), so the base keeps a copy."""
    copy, original = KUSTOMIZE / "base" / "routes.yaml", REPO / "routes.yaml"
    if os.environ.get("RELAY_UPDATE_GOLDEN"):
        shutil.copyfile(original, copy)
    assert copy.read_text() == original.read_text(), (
        "deploy/kubernetes/base/routes.yaml differs from routes.yaml: "
        "RELAY_UPDATE_GOLDEN=1 pytest tests/deploy/test_kubernetes.py copies it")
    rendered = one(overlay("sqlite"), "ConfigMap", "relay-routes")
    assert rendered["data"]["routes.yaml"] == original.read_text()


@pytest.mark.parametrize("target", sorted(GENERATED), ids=lambda p: str(p.relative_to(KUSTOMIZE)))
def test_prometheusrules_hold_the_rule_files(target: Path) -> None:
    source, name = GENERATED[target]
    if os.environ.get("RELAY_UPDATE_GOLDEN"):
        target.write_text(prometheusrule.text(source, name))
    assert target.read_text() == prometheusrule.text(source, name), (
        f"{target.relative_to(REPO)} is not {source.relative_to(REPO)}: "
        "RELAY_UPDATE_GOLDEN=1 pytest tests/deploy/test_kubernetes.py rewrites it")
    assert yaml.safe_load(target.read_text())["spec"]["groups"] == yaml.safe_load(source.read_text())["groups"]


def test_relays_rules_see_the_job_the_servicemonitor_gives() -> None:
    """Without `jobLabel`, prometheus-operator names the job after the Service: relay-rules.yml's job matchers
    must match it, or RelayDown would fire (absent) for a relay that is scraped fine."""
    resources = overlay("sqlite")
    monitor, service = one(resources, "ServiceMonitor", "relay"), one(resources, "Service", "relay")
    assert "jobLabel" not in monitor["spec"]
    job = service["metadata"]["name"]
    rules = one(resources, "PrometheusRule", "relay")["spec"]["groups"]
    matchers = [m for group in rules for rule in group["rules"]
                for m in re.findall(r'job(=~?)"([^"]*)"', rule["expr"])]
    assert matchers, "relay-rules.yml selects relay's series by job"
    for op, value in matchers:
        assert re.fullmatch(value, job) if op == "=~" else value == job, f"job{op}{value!r} misses job {job!r}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_core_kinds_validate_strictly_on_every_kubernetes_version(variant: tuple[str, tuple[str, ...]]) -> None:
    """`kubernetes-validate --strict` for each Kubernetes minor it ships schemas of."""
    resources = overlay(*variant)
    assert {r["kind"] for r in resources if "monitoring.coreos.com" not in r["apiVersion"]} <= CORE_KINDS
    errors = []
    for version in KUBERNETES_VERSIONS:
        for resource in resources:
            if resource["kind"] not in CORE_KINDS:
                continue
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(map(str, exc.absolute_path))
                errors.append(f"{version} {resource['kind']}/{resource['metadata']['name']}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("variant", VARIANTS)
def test_monitoring_kinds_validate_against_prometheus_operator_crds(variant: tuple[str, tuple[str, ...]]) -> None:
    resources = [r for r in overlay(*variant) if "monitoring.coreos.com" in r["apiVersion"]]
    assert {r["kind"] for r in resources} == {"ServiceMonitor", "PrometheusRule"}
    for resource in resources:
        assert (resource["apiVersion"], resource["kind"]) in CRD_FILES
        assert crd_errors(resource) == []


def test_the_validators_refuse_a_misspelt_field() -> None:
    """The checks above would catch a typo: the same validators, fed one, refuse it."""
    deployment = one(overlay("sqlite"), "Deployment", "relay")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate(one(overlay("sqlite"), "ServiceMonitor"), KUBERNETES_VERSIONS[-1], strict=True)
    monitor = yaml.safe_load(yaml.safe_dump(one(overlay("sqlite"), "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["prot"] = monitor["spec"]["endpoints"][0].pop("port")
    assert any("prot" in e for e in crd_errors(monitor))
    monitor["spec"]["endpoints"][0]["port"] = monitor["spec"]["endpoints"][0].pop("prot")
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    assert any("interval" in e for e in crd_errors(monitor))
    rule = yaml.safe_load(yaml.safe_dump(one(overlay("sqlite"), "PrometheusRule", "relay")))
    alert = next(r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r)
    alert["for"] = "2 minutes"
    assert any(".for: '2 minutes' does not match" in e for e in crd_errors(rule))


class _Seen(dict[str, str]):
    """An empty environment that remembers every variable looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return default


def variables_read(routes_yaml: str) -> set[str]:
    seen = _Seen()
    expand(routes_yaml, seen)
    return seen.names


def env_of(deployment: Resource) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


def port_named(deployment: Resource, name: str) -> int:
    return int(next(p["containerPort"] for p in container(deployment)["ports"] if p["name"] == name))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_servicemonitor_and_probes_point_at_relays_port(variant: tuple[str, tuple[str, ...]]) -> None:
    """The chain Prometheus and the kubelet follow: ServiceMonitor -> Service port -> container port -> relay."""
    resources = overlay(*variant)
    deployment, service = one(resources, "Deployment", "relay"), one(resources, "Service", "relay")
    monitor = one(resources, "ServiceMonitor", "relay")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["metadata"].get("namespace") == service["metadata"].get("namespace")

    [http] = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert http["port"] == 8080 and port_named(deployment, str(http["targetPort"])) == 8080
    env = env_of(deployment)
    assert env["RELAY_PORT"]["value"] == str(port_named(deployment, "http"))
    assert env["RELAY_HOST"]["value"] == "0.0.0.0"

    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    relay = container(deployment)
    assert relay["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert relay["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert relay["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_runs_as_non_root_with_a_read_only_root_filesystem(variant: tuple[str, tuple[str, ...]]) -> None:
    deployment = one(overlay(*variant), "Deployment", "relay")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # A Service named relay would otherwise give the pod RELAY_PORT=tcp://10.x.y.z:8080, which relay would read.
    assert pod["enableServiceLinks"] is False
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
    assert "/tmp" in mounts and mounts["/etc/relay/routes"]["readOnly"] is True
    assert "subPath" not in mounts["/etc/relay/routes"], "a subPath mount never sees ConfigMap updates"
    resources = container(deployment)["resources"]
    assert resources["requests"]["memory"] == "128Mi" and resources["limits"]["memory"] == "256Mi"
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    defaults = Settings.model_fields
    grace = float(env.get("RELAY_SHUTDOWN_GRACE_SECONDS") or defaults["shutdown_grace_seconds"].default)
    assert pod["terminationGracePeriodSeconds"] > grace  # in-flight sends finish before the SIGKILL
    # relay listens only once its database answers; it waits RELAY_DATABASE_WAIT_SECONDS for PostgreSQL.
    wait = float(env.get("RELAY_DATABASE_WAIT_SECONDS") or defaults["database_wait_seconds"].default)
    startup = container(deployment)["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > wait + 30


def test_sqlite_overlay_is_one_pod_on_its_volume() -> None:
    resources = overlay("sqlite")
    deployment = one(resources, "Deployment", "relay")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two processes on one file
    claim = one(resources, "PersistentVolumeClaim", "relay-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    [data] = [m for m in container(deployment)["volumeMounts"]
              if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == "relay-data"]
    database = env_of(deployment)["RELAY_DATABASE_URL"]["value"]
    assert database.startswith(f"sqlite:///{data['mountPath']}/")


def test_postgres_overlay_is_two_pods_without_a_volume() -> None:
    resources = overlay("postgres")
    deployment = one(resources, "Deployment", "relay")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate" and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert not [r for r in resources if r["kind"] == "PersistentVolumeClaim"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert "/data" not in {m["mountPath"] for m in container(deployment)["volumeMounts"]}
    assert env_of(deployment)["RELAY_DATABASE_URL"] == {
        "name": "RELAY_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "relay-database", "key": "url"}}}
    budget = one(resources, "PodDisruptionBudget", "relay")
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    [spread] = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert selects(spread["labelSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variable_routes_yaml_reads_is_set_by_the_deployment(variant: tuple[str, tuple[str, ...]]) -> None:
    deployment = one(overlay(*variant), "Deployment", "relay")
    env = env_of(deployment)
    routes = one(overlay(*variant), "ConfigMap", "relay-routes")["data"]["routes.yaml"]
    assert variables_read(routes) <= set(env)
    assert {"SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY"} <= variables_read(routes)
    for variable in env.values():
        assert ("value" in variable) != ("valueFrom" in variable), variable  # never both: the API refuses it
    # Secret values come only from the Secret docs/kubernetes.md tells you to create, and only the token is required.
    refs = {n: v["valueFrom"]["secretKeyRef"] for n, v in env.items() if "valueFrom" in v}
    assert {n for n, ref in refs.items() if not ref.get("optional")} <= {"RELAY_WEBHOOK_TOKEN", "RELAY_DATABASE_URL"}
    assert {ref["name"] for ref in refs.values()} <= {"relay", "relay-database"}


def test_image_is_tagged_with_the_package_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name in OVERLAYS:
        assert container(one(overlay(name), "Deployment", "relay"))["image"] == f"relay:{version}"


def readme_section(title: str) -> str:
    """A section of docs/kubernetes.md (the README's "Deploying on Kubernetes" moved there)."""
    text = (REPO / "docs" / "kubernetes.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def shell_blocks(section: str) -> str:
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def test_readme_creates_the_secrets_the_deployment_reads() -> None:
    """docs/kubernetes.md's `kubectl create secret` commands give every key the Deployment may read, and no other."""
    commands = shell_blocks(readme_section("Deploying on Kubernetes")).replace("\\\n", " ")
    namespace = one(overlay("sqlite"), "Deployment", "relay")["metadata"]["namespace"]
    created: dict[str, set[str]] = {}
    for line in commands.splitlines():
        if match := re.search(r"kubectl -n (\S+) create secret generic (\S+)(.*)", line):
            if match[1] == namespace:
                created[match[2]] = set(re.findall(r"--from-(?:literal|file)=([A-Za-z_][\w.-]*)=", match[3]))
    read: dict[str, set[str]] = {}
    for name in OVERLAYS:
        for variable in env_of(one(overlay(name), "Deployment", "relay")).values():
            if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                read.setdefault(ref["name"], set()).add(ref["key"])
    assert read == created


def test_readme_applies_every_overlay() -> None:
    commands = shell_blocks(readme_section("Deploying on Kubernetes"))
    applied = set(re.findall(r"kubectl apply -k deploy/kubernetes/overlays/(\w+)", commands))
    assert applied == set(OVERLAYS)


def test_readme_alertmanager_config_is_valid_and_points_at_the_service(tmp_path: Any) -> None:
    """The plain alertmanager.yml in docs/kubernetes.md passes `amtool check-config` and posts to relay's Service."""
    section = readme_section("Deploying on Kubernetes")
    [config] = [b for b in re.findall(r"```yaml\n(.*?)```", section, re.S) if "webhook_configs" in b]
    service = one(overlay("sqlite"), "Service", "relay")
    url = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{8080}/webhook"
    assert url in config
    webhook = yaml.safe_load(config)["receivers"][0]["webhook_configs"][0]
    assert webhook["http_config"]["authorization"]["credentials_file"]
    amtool = ALERTMANAGER.which("amtool", install="apt-get install prometheus-alertmanager")
    path = tmp_path / "alertmanager.yml"
    path.write_text(config)
    done = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanagerconfig_example_reaches_relay_with_the_token_from_a_secret() -> None:
    """Not in any overlay (it lives in Alertmanager's namespace); no AlertmanagerConfig CRD schema is at hand,
    so this checks what it must say rather than validating it against the CRD."""
    [example] = [d for d in yaml.safe_load_all((KUSTOMIZE / "alertmanagerconfig.yaml").read_text()) if d]
    assert (example["apiVersion"], example["kind"]) == ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig")
    spec = example["spec"]
    [receiver] = spec["receivers"]
    assert spec["route"]["receiver"] == receiver["name"]
    [webhook] = receiver["webhookConfigs"]
    service = one(overlay("sqlite"), "Service", "relay")
    assert webhook["url"] == f"http://relay.{service['metadata']['namespace']}.svc:8080/webhook"
    assert webhook["sendResolved"] is True
    authorization = webhook["httpConfig"]["authorization"]
    assert authorization["type"] == "Bearer" and set(authorization["credentials"]) == {"name", "key"}


def test_templates_component_mounts_overrides_where_relay_looks() -> None:
    """Each file of the templates ConfigMap lands at a template path relay knows, in RELAY_TEMPLATES."""
    resources = overlay("sqlite", ("templates",))
    deployment = one(resources, "Deployment", "relay")
    data = one(resources, "ConfigMap", "relay-templates")["data"]
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "templates")
    assert env_of(deployment)["RELAY_TEMPLATES"]["value"] == mount["mountPath"]
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "templates")
    items = volume["configMap"]["items"]
    assert {item["key"] for item in items} == set(data), "a key without an item is not mounted"
    packaged = REPO / "relay" / "templates"
    for item in items:
        assert (packaged / item["path"]).is_file(), f"{item['path']} overrides no packaged template"
    # The example starts as the default it overrides, so adding the component changes nothing until edited.
    assert data["slack-title.j2"] == (packaged / "slack" / "title.j2").read_text()


def test_slack_actions_component_exposes_only_the_interactions_path() -> None:
    """Slack reaches /slack/interactions through the Ingress and nothing else of relay; relay gets the secret."""
    resources = overlay("sqlite", ("slack-actions",))
    ingress = one(resources, "Ingress", "relay-slack")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/slack/interactions", "Exact")]
    service = one(resources, "Service", "relay")
    backend = paths[0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
    secret = env_of(one(resources, "Deployment", "relay"))["RELAY_SLACK_SIGNING_SECRET"]
    assert secret["valueFrom"]["secretKeyRef"]["name"] == "relay"
    assert ("POST", "/slack/interactions") in {(m, r.path) for r in create_app_routes()
                                                  for m in getattr(r, "methods", None) or ()}


def create_app_routes() -> list[Any]:
    from relay.app import create_app

    return list(create_app(Settings()).routes)
