"""The chart without a cluster: lint, schema errors, CRDs in step with the API models, security settings, labels,
and the settings it renders parse as the components' own settings classes (so the chart can't drift from them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from voxfleet import crds_cli
from voxfleet.api.crd import all_crds
from voxfleet.api.settings import PlatformSettings
from voxfleet.world.pod_env import expand

from .chart_generated_files import CRDS_DIR, POLICY_FILE, tenant_deletion_policy_json
from .helm_render import (CHART, KUBE_VERSION, MONITORING_API_VERSIONS, VALUES_FILES, container_env, find, helm, render,
                          render_text, template_args)

VALUE_SETS = {"default": (), **{name: (path,) for name, path in VALUES_FILES.items()}}
STANDARD_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/component")


def test_the_three_values_files_exist():
    assert set(VALUES_FILES) == {"minimal", "production", "multi-region"}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_strict_passes(name):
    args = ["lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART)] + [a for path in VALUE_SETS[name] for a in ("--values", str(path))]
    result = helm(*args)
    assert "0 chart(s) failed" in result.stdout, result.stdout


# --- schema: bad values fail before anything renders, naming the key -------------------------------------

@pytest.mark.parametrize("assignment, names", [
    ("gateway.replica=3", ["/gateway", "'replica'"]),  # typo'd key
    ("operator.port=http", ["/operator/port", "want integer"]),  # wrong type
    ("gateway.regions.us-east.livekitUrl=wss://lk,gateway.regions.us-east.credentialsSecret=lk,"
     "gateway.regions.us-east.apiSecretKy=x", ["/gateway/regions/us-east", "'apiSecretKy'"]),  # nested typo
    ("gateway.regions.us-east.livekitUrl=https://lk,gateway.regions.us-east.credentialsSecret=lk",
     ["/gateway/regions/us-east/livekitUrl"]),  # LiveKit URLs are ws:// or wss://
    ("platform.logFormat=text", ["/platform/logFormat"]),  # not one of the choices
    ("workers.port=70000", ["/workers/port"]),  # out of range
    ("monitorin.serviceMonitor.enabled=true", ["'monitorin'"]),  # typo at the top level
])
def test_bad_values_fail_with_a_schema_error_naming_the_key(assignment, names):
    result = helm(*template_args(set_values=(assignment,)), check=False)
    assert result.returncode != 0, f"{assignment} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    for name in names:
        assert name in result.stderr, f"{name} missing from: {result.stderr}"


def test_wrong_type_in_a_values_file_is_refused(tmp_path: Path):
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump({"gateway": {"autoscaling": {"enabled": "yes"}}}))
    result = helm(*template_args(values=(bad,)), check=False)
    assert result.returncode != 0
    assert "/gateway/autoscaling/enabled" in result.stderr and "want boolean" in result.stderr, result.stderr


def test_every_value_in_values_yaml_is_described_by_the_schema():
    """additionalProperties: false all the way down: a key added to values.yaml without the schema fails lint."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '/'} accepts unknown keys"
            for key, child in node["properties"].items():
                if "$ref" not in child:
                    walk(child, f"{path}/{key}")

    walk(schema, "")
    for name, definition in schema["definitions"].items():
        walk(definition, f"#/definitions/{name}")


# --- CRDs: the chart ships exactly what the API models generate ---------------------------------------------

def test_chart_crds_are_the_generated_ones():
    assert not (CHART / "crds").exists(), "Helm installs crds/ once and never upgrades it: CRDs live in files/crds/"
    assert sorted(p.name for p in CRDS_DIR.iterdir()) == sorted(all_crds()), "extra or missing files in files/crds"
    assert crds_cli.main(["--check", "--dir", str(CRDS_DIR)]) == 0, \
        "charts/voxfleet/files/crds is stale: run `python -m tests.chart.chart_generated_files`"
    repo_crds = CHART.parents[1] / "crds"
    for name in all_crds():
        assert (CRDS_DIR / name).read_text() == (repo_crds / name).read_text(), f"{name} differs from crds/{name}"


def test_chart_tenant_deletion_policy_is_the_operators():
    assert POLICY_FILE.read_text() == tenant_deletion_policy_json(), \
        f"{POLICY_FILE} is stale: run `python -m tests.chart.chart_generated_files`"
    rendered = [m for m in render() if m["kind"].startswith("ValidatingAdmissionPolicy")]
    policy = find(rendered, "ValidatingAdmissionPolicy", "voxfleet-tenant-deletion")
    binding = find(rendered, "ValidatingAdmissionPolicyBinding", "voxfleet-tenant-deletion")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert policy["spec"] == json.loads(POLICY_FILE.read_text())[0]["spec"]


# --- what every rendering must hold ---------------------------------------------------------------------

def _pod_specs(manifests: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for m in manifests:
        if m["kind"] in ("Deployment", "Job", "StatefulSet"):
            specs.append((m["metadata"]["name"], m["spec"]["template"]["spec"]))
        elif m["kind"] == "Pod":
            specs.append((m["metadata"]["name"], m["spec"]))
    return specs


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_pod_is_non_root_read_only_without_capabilities(name):
    manifests = render(values=VALUE_SETS[name], api_versions=MONITORING_API_VERSIONS)
    specs = _pod_specs(manifests)
    store = _values(name).get("database", {})
    bundled = not store.get("existingSecret") and store.get("bundled", {}).get("enabled", True)
    # operator, gateway, the secrets hook Job, helm test; the store's migration Job; the bundled PostgreSQL
    assert len(specs) == 5 + bundled, [pod_name for pod_name, _ in specs]
    for pod_name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, pod_name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, pod_name
            assert sc["capabilities"] == {"drop": ["ALL"]}, pod_name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, pod_name
            # The test world (and the image) run the container's command: it must be the voxfleet entry point
            # (the bundled PostgreSQL runs its own image's).
            expected = ("docker-entrypoint.sh",) if pod_name.endswith("-postgres") else ("voxfleet", "python")
            assert container["command"][0] in expected, pod_name
            assert container["resources"]["limits"]["memory"], pod_name


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_object_has_the_standard_labels(name):
    for manifest in render(values=VALUE_SETS[name], api_versions=MONITORING_API_VERSIONS):
        labels = manifest["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{manifest['kind']}/{manifest['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "voxfleet"


def test_monitoring_objects_render_only_where_the_api_is_served():
    production = VALUE_SETS["production"]
    kinds = lambda ms: sorted(m["kind"] for m in ms if m["kind"] in ("ServiceMonitor", "PodMonitor"))  # noqa: E731
    assert kinds(render(values=production)) == []
    assert kinds(render(values=production, api_versions=MONITORING_API_VERSIONS)) == [
        "PodMonitor", "ServiceMonitor", "ServiceMonitor"]
    assert kinds(render(api_versions=MONITORING_API_VERSIONS)) == []  # defaults: off even when served


# --- the settings the chart renders are the components' settings ----------------------------------------

def _config_map_env(manifests: list[dict], name: str) -> dict[str, str]:
    return dict(find(manifests, "ConfigMap", name)["data"])


POD_FIELDS = {"metadata.name": "pod-0", "metadata.namespace": "voxfleet-system", "status.podIP": "10.1.2.3"}


def _literal_env(deployment: dict) -> dict[str, str]:
    """The container's env as the kubelet would resolve it: downward-API fields and secretKeyRefs get stand-in
    values (a Secret key becomes "<lowercased var name>-value"), literal values are $(VAR)-expanded."""
    env: dict[str, str] = {}
    for name, var in container_env(deployment).items():
        source = var.get("valueFrom", {})
        if "value" in var:
            env[name] = expand(var["value"], env)
        elif "fieldRef" in source:
            env[name] = POD_FIELDS[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            env[name] = f"{name.lower()}-value"
    return env


def _apply_env(monkeypatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_gateway_env_parses_as_gateway_settings(name, monkeypatch):
    from voxfleet.gateway.settings import GatewaySettings

    manifests = render(values=VALUE_SETS[name])
    deployment = find(manifests, "Deployment", "voxfleet-gateway")
    env = {**_config_map_env(manifests, "voxfleet-platform"), **_config_map_env(manifests, "voxfleet-gateway"),
           **_literal_env(deployment)}
    known = {f"VOXFLEET_{field.upper()}" for field in GatewaySettings.model_fields}
    unknown = sorted(n for n in env if n.startswith("VOXFLEET_") and n not in known)
    assert not unknown, f"the chart sets env vars GatewaySettings doesn't read: {unknown}"
    _apply_env(monkeypatch, env)
    settings = GatewaySettings()
    values = _values(name)
    regions = values.get("gateway", {}).get("regions", {})
    assert sorted(settings.regions) == sorted(regions)
    for index, region in enumerate(sorted(regions)):
        parsed = settings.regions[region]
        assert parsed.url == regions[region]["livekitUrl"]
        # Credentials arrive from their Secrets, never from the chart's values.
        assert parsed.api_key == f"livekit_{index}_api_key-value"
        assert parsed.api_secret.get_secret_value() == f"livekit_{index}_api_secret-value"
    assert settings.latency_ms == values.get("gateway", {}).get("latencyMs", {})
    assert str(settings.session_signing_key_file).startswith("/etc/voxfleet/session-key/")
    mounts = {m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert str(settings.session_signing_key_file.parent) in mounts
    assert str(settings.worker_token_file.parent) in mounts


def _values(name: str) -> dict:
    return yaml.safe_load(VALUE_SETS[name][0].read_text()) if VALUE_SETS[name] else {}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_operator_env_parses_as_operator_and_platform_settings(name, monkeypatch):
    from voxfleet.operator.settings import OperatorSettings

    manifests = render(values=VALUE_SETS[name])
    deployment = find(manifests, "Deployment", "voxfleet-operator")
    env = {**_config_map_env(manifests, "voxfleet-platform"), **_literal_env(deployment)}
    known = {f"VOXFLEET_{f.upper()}" for f in PlatformSettings.model_fields} | {
        f"VOXFLEET_OPERATOR_{f.upper()}" for f in OperatorSettings.model_fields}
    unknown = sorted(n for n in env if n.startswith("VOXFLEET_") and n not in known)
    assert not unknown, f"the chart sets env vars the operator doesn't read: {unknown}"
    _apply_env(monkeypatch, env)
    operator, platform = OperatorSettings(), PlatformSettings()
    values = _values(name)
    workers = values.get("workers", {})
    assert operator.identity == "pod-0"  # the pod name: replicas tell themselves apart
    assert operator.lease_name == find(manifests, "Lease")["metadata"]["name"]
    assert platform.platform_namespace == "voxfleet-system"
    assert platform.worker_node_selector == workers.get("nodeSelector", {})
    assert platform.worker_tolerations == workers.get("tolerations", [])
    assert platform.allowed_worker_images == workers.get("allowedImages", [])
    image = values.get("image", {})
    assert platform.worker_image == f"{image.get('repository', 'voxfleet/voxfleet')}:{image.get('tag', '0.1.0')}"
    secrets_job = find(manifests, "Job", "voxfleet-secrets")["spec"]["template"]["spec"]["containers"][0]
    assert f"--secret={platform.worker_token_secret}/token" in secrets_job["args"]
    assert platform.outbound_allowed_cidrs == values.get("platform", {}).get("outboundAllowedCidrs", [])


# --- upgrades roll exactly what a change touches -----------------------------------------------------------

def _pod_template(manifests: list[dict], component: str) -> dict:
    return find(manifests, "Deployment", f"voxfleet-{component}")["spec"]["template"]


def test_a_changed_value_rolls_only_the_deployments_that_read_it():
    base = render(values=VALUE_SETS["minimal"])
    gateway_only = render(values=VALUE_SETS["minimal"], set_values=("gateway.latencyMs.us-east.us-east=3",))
    platform_wide = render(values=VALUE_SETS["minimal"], set_values=("workers.allowedImages={registry.example/*}",))
    assert _pod_template(gateway_only, "gateway") != _pod_template(base, "gateway")
    assert _pod_template(gateway_only, "operator") == _pod_template(base, "operator")
    assert _pod_template(platform_wide, "gateway") != _pod_template(base, "gateway")
    assert _pod_template(platform_wide, "operator") != _pod_template(base, "operator")


# --- the Grafana dashboard only charts metrics the components export -----------------------------------------

def test_dashboard_queries_name_only_exported_metrics():
    from voxfleet.gateway.metrics import GatewayMetrics
    from voxfleet.worker.telemetry.metrics import REGISTRY

    exported: set[str] = set()
    for registry in (REGISTRY, GatewayMetrics().registry):
        for family in registry.collect():
            exported |= {sample.name for sample in family.samples} | {family.name}
    dashboard = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in expressions for name in re.findall(r"\b(voxfleet_[a-z_]+)", expr)}
    # Series of labelled histograms and counters (_bucket, _sum, _count, _total) appear once observed; their
    # family name is exported from the start.
    missing = sorted(n for n in used if n not in exported and re.sub(r"_(bucket|sum|count|total)$", "", n) not in exported)
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("first audio", "active sessions", "free slots", "allocation failures", "usage per tenant"):
        assert topic in titles


def test_dashboard_config_map_carries_the_dashboard_json():
    manifests = render(values=VALUE_SETS["production"])
    config_map = find(manifests, "ConfigMap", "voxfleet-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["voxfleet-overview.json"])["uid"] == "voxfleet-overview"


# --- secrets that survive a render, kubeVersion, the CRD upgrade path ----------------------------------------

def _secret_references(manifests: list[dict]) -> list[tuple[str, str]]:
    """Every (object, Secret name) the rendered pods mount or read env from."""
    references = []
    for name, spec in _pod_specs(manifests):
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                references.append((name, volume["secret"]["secretName"]))
        for container in spec["containers"]:
            for var in container.get("env", []):
                if "secretKeyRef" in var.get("valueFrom", {}):
                    references.append((name, var["valueFrom"]["secretKeyRef"]["name"]))
    return sorted(references)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_two_renders_are_identical_and_carry_no_generated_secret(name):
    """What Argo CD or Flux renders with `helm template`: twice the same bytes, so a sync never rotates anything.
    No Secret is rendered at all: the pre-install/pre-upgrade hook Job creates the worker token and the session key
    when absent, and the pods reference those names."""
    first = render_text(values=VALUE_SETS[name], api_versions=MONITORING_API_VERSIONS)
    second = render_text(values=VALUE_SETS[name], api_versions=MONITORING_API_VERSIONS)
    assert first == second, "two renders differ: a GitOps sync would change the release"
    manifests = [m for m in yaml.safe_load_all(first) if m]
    assert [m["metadata"]["name"] for m in manifests if m["kind"] == "Secret"] == []
    references = _secret_references(manifests)
    job = find(manifests, "Job", "voxfleet-secrets")
    created = {arg.removeprefix("--secret=").split("/")[0]
               for arg in job["spec"]["template"]["spec"]["containers"][0]["args"] if arg.startswith("--secret=")}
    store = _values(name).get("database", {})
    bundled = not store.get("existingSecret") and store.get("bundled", {}).get("enabled", True)
    # The bundled PostgreSQL's password is made by the same hook, never rendered.
    assert created == {"voxfleet-worker-token", "voxfleet-session-key"} | ({"voxfleet-database"} if bundled else set())
    assert ("voxfleet-gateway", "voxfleet-session-key") in references
    assert ("voxfleet-operator", "voxfleet-worker-token") in references
    assert ("voxfleet-gateway", "voxfleet-worker-token") in references
    print(f"{name}: {len(first)} bytes rendered twice, identical; {len(references)} Secret references")


def test_the_secrets_job_is_a_pre_install_and_pre_upgrade_hook_with_rights_on_its_two_secrets_only():
    manifests = render()
    hooks = {(m["kind"], m["metadata"]["name"]): m["metadata"]["annotations"] for m in manifests
             if m["metadata"]["name"] == "voxfleet-secrets"}
    assert set(hooks) == {("ServiceAccount", "voxfleet-secrets"), ("Role", "voxfleet-secrets"),
                          ("RoleBinding", "voxfleet-secrets"), ("Job", "voxfleet-secrets")}
    for annotations in hooks.values():
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    # RBAC before the Job that uses it.
    weights = {kind: int(a["helm.sh/hook-weight"]) for (kind, _), a in hooks.items()}
    assert weights["ServiceAccount"] < weights["RoleBinding"] < weights["Job"] and weights["Role"] < weights["Job"]
    rules = find(manifests, "Role", "voxfleet-secrets")["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["secrets"],
                      "resourceNames": ["voxfleet-worker-token", "voxfleet-session-key", "voxfleet-database"],
                      "verbs": ["get", "patch"]},
                     {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    spec = find(manifests, "Job", "voxfleet-secrets")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "voxfleet-secrets" and spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["command"] == ["python", "-m", "voxfleet.platform_secrets"]


@pytest.mark.parametrize("assignments, generated, mounted", [
    ((), {"voxfleet-worker-token/token", "voxfleet-session-key/key"}, "voxfleet-session-key"),
    (("gateway.sessionSigningKey.existingSecret=my-key",), {"voxfleet-worker-token/token"}, "my-key"),
    (("platform.workerToken.create=false",), {"voxfleet-session-key/key"}, "voxfleet-session-key"),
    (("platform.workerToken.create=false", "gateway.sessionSigningKey.existingSecret=my-key"), set(), "my-key"),
])
def test_an_existing_secret_is_used_and_never_generated(assignments, generated, mounted):
    # The store's own Secret (database.*) has its test below; here the platform team brings its database's URL.
    manifests = render(set_values=(*assignments, "database.existingSecret=my-database"))
    jobs = [m for m in manifests if m["kind"] == "Job"]
    args = {a.removeprefix("--secret=") for job in jobs
            for a in job["spec"]["template"]["spec"]["containers"][0].get("args", []) if a.startswith("--secret=")}
    assert args == generated
    if not generated:  # nothing to create: no hook, no ServiceAccount that may create Secrets
        assert not [m for m in manifests if m["metadata"]["name"] == "voxfleet-secrets"]
    volumes = find(manifests, "Deployment", "voxfleet-gateway")["spec"]["template"]["spec"]["volumes"]
    assert [v["secret"]["secretName"] for v in volumes if v["name"] == "session-key"] == [mounted]


@pytest.mark.parametrize("version, accepted", [
    ("1.29.9", False), ("1.30.0", True), ("1.30.4-eks-1552ad0", True), ("1.36.3", True)])
def test_kube_version_is_checked(version, accepted):
    """Chart.yaml's kubeVersion: ValidatingAdmissionPolicy v1 (the operator's write scope) needs 1.30."""
    result = helm(*template_args(kube_version=version), check=False)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "chart requires kubeVersion: >=1.30.0-0" in result.stderr, result.stderr


def _crds(manifests: list[dict]) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "CustomResourceDefinition"}


def test_crds_are_release_objects_kept_on_uninstall_by_default():
    crds = _crds(render())
    assert sorted(crds) == ["tenants.voxfleet.dev", "voiceagents.voxfleet.dev"]
    for name, crd in crds.items():
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}, name
        generated = yaml.safe_load((CRDS_DIR / f"voxfleet.dev_{name.split('.')[0]}.yaml").read_text())
        assert crd["spec"] == generated["spec"], f"{name}: the rendered spec is not the generated one"
        assert crd["metadata"]["labels"]["app.kubernetes.io/component"] == "crd"


def test_crds_enabled_false_renders_no_crd_and_keep_false_drops_the_annotation():
    assert _crds(render(set_values=("crds.enabled=false",))) == {}
    assert "CustomResourceDefinition" not in render_text(set_values=("crds.enabled=false",), include_crds=True)
    for crd in _crds(render(set_values=("crds.keep=false",))).values():
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


# --- the store (database.*) ---------------------------------------------------------------------------------

def _database_env(manifests: list[dict], kind: str, name: str) -> dict[str, dict]:
    return container_env(find(manifests, kind, name))


@pytest.mark.parametrize("assignments, mode", [
    ((), "bundled"), (("database.existingSecret=my-database",), "existing"),
    (("database.existingSecret=my-database", "database.bundled.enabled=false"), "existing"),
    (("database.bundled.enabled=false",), "none")])
def test_the_store_comes_from_the_users_secret_the_bundled_server_or_nowhere(assignments, mode, monkeypatch):
    from voxfleet.gateway.settings import GatewaySettings

    manifests = render(set_values=assignments)
    kinds = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    gateway_env = _database_env(manifests, "Deployment", "voxfleet-gateway")
    jobs = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Job"}
    secrets_job_args = jobs["voxfleet-secrets"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (("StatefulSet", "voxfleet-postgres") in kinds) == (mode == "bundled")
    assert ("--secret=voxfleet-database/password" in secrets_job_args) == (mode == "bundled")
    assert ("voxfleet-migrations" in jobs) == (mode != "none")
    assert ("VOXFLEET_DATABASE_URL" in gateway_env) == (mode != "none")
    print(f"{mode}: {sorted(name for kind, name in kinds if 'postgres' in name or 'migrations' in name)}")
    if mode == "none":
        return
    migrations = jobs["voxfleet-migrations"]
    container = migrations["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["voxfleet", "db", "upgrade"]
    # The Job and the gateway read the same URL, and never from a literal in values.
    job_env = container_env(migrations)
    assert job_env and all(job_env[name] == gateway_env[name] for name in job_env), job_env
    hook = migrations["metadata"]["annotations"]["helm.sh/hook"]
    if mode == "existing":
        assert gateway_env["VOXFLEET_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "my-database",
                                                                                    "key": "url"}
        assert hook == "pre-install,pre-upgrade"
    else:
        # Built by the kubelet from the generated password; the server is a release object, so post-install.
        assert gateway_env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "voxfleet-database",
                                                                                 "key": "password"}
        assert hook == "post-install,pre-upgrade"
        env = _literal_env(find(manifests, "Deployment", "voxfleet-gateway"))
        monkeypatch.setenv("VOXFLEET_DATABASE_URL", env["VOXFLEET_DATABASE_URL"])
        url = GatewaySettings(session_signing_key="k" * 32).load_database_url()
        assert url == ("postgresql+asyncpg://voxfleet:database_password-value@"
                       "voxfleet-postgres.voxfleet-system.svc:5432/voxfleet")
        policy = find(manifests, "NetworkPolicy", "voxfleet-postgres")
        peers = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                 for rule in policy["spec"]["ingress"] for peer in rule["from"]]
        assert peers == ["gateway", "migrations"]  # workers and tenants never reach the store
    assert int(migrations["metadata"]["annotations"]["helm.sh/hook-weight"]) > -5  # after the secrets Job
