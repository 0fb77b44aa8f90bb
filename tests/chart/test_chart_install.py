"""`helm install` of charts/voxfleet into the test world, and the release's whole life: the pre-install hook Job
runs `python -m voxfleet.platform_secrets` as a real process and creates the worker token and session key; the pod
runner brings the operator and gateway up as the chart configured them (their container commands as real processes
bound to their pod IPs); the operator reconciles a Tenant and a VoiceAgent into a running worker; the gateway
starts a session whose worker joins the LiveKit room; `helm test` passes; `helm upgrade` with a changed value rolls
only what changed and keeps both Secrets (the hook runs again and keeps them); `helm uninstall` leaves nothing
behind but the CRDs and those two Secrets, which a second install finds and keeps. The store is the platform
team's own PostgreSQL (database.existingSecret, a real server): the pre-install migration Job runs `voxfleet db
upgrade` as a real process, and the gateway's /readyz says its database is up.

One test, because the steps are one story on one release (xdist would split separate tests across workers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client

from tests.world.waiting import wait_for
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.store import migrations_runner
from voxfleet.world import binaries
from voxfleet.world import postgres as pg

from .helm_render import CHART
from .world_release import Release, delete_tenant, tenant_and_agent, world_values

pytestmark = pytest.mark.world

VOXFLEET = Path(sys.executable).with_name("voxfleet")


DATABASE_SECRET = "voxfleet-database"  # the platform team's own PostgreSQL URL (database.existingSecret)


@pytest.fixture(scope="module")
def release_database(postgres):
    """An empty database on a real PostgreSQL: the release's migration Job (a pre-install hook) fills it."""
    name = f"chart_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(postgres.admin_url, name)
    yield url
    pg.drop_database(postgres.admin_url, name)


@pytest.fixture(scope="module")
def release(kube, pods, livekit, tmp_path_factory, release_database):
    suffix = uuid.uuid4().hex[:6]
    namespace = kube.new_namespace("voxfleet-chart")
    shard = f"chart-{suffix}"
    values_file = tmp_path_factory.mktemp("chart") / "world-values.yaml"
    values_file.write_text(yaml.safe_dump(world_values(pods, livekit, shard, namespace,
                                                       database_secret=DATABASE_SECRET)))
    us_east = livekit["us-east"]
    kube.kubectl("-n", namespace, "create", "secret", "generic", "livekit-us-east",
                 f"--from-literal=api-key={us_east.api_key}", f"--from-literal=api-secret={us_east.api_secret}")
    # Through stdin: a command line (which a failure's message would repeat) never carries the password.
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": DATABASE_SECRET},
        "stringData": {"url": release_database}}))
    rel = Release(name=f"vf-{suffix}", namespace=namespace, shard=shard, values_file=values_file)
    yield rel
    kube.helm("uninstall", rel.name, "-n", namespace, "--wait", "--timeout", "2m", check=False)
    kube.delete_namespace(namespace)


# --- helpers ------------------------------------------------------------------------------------------------

def _core(kube) -> client.CoreV1Api:
    return client.CoreV1Api(kube.api_client())


def _ready(pod) -> bool:
    return pod.status.phase == "Running" and not pod.metadata.deletion_timestamp and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _component_pods(kube, rel: Release, component: str) -> list:
    selector = f"app.kubernetes.io/instance={rel.name},app.kubernetes.io/component={component}"
    return _core(kube).list_namespaced_pod(rel.namespace, label_selector=selector).items


def _ready_pods(kube, rel: Release, component: str) -> list:
    return [p for p in _component_pods(kube, rel, component) if _ready(p)]


def _helm(kube, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return kube.helm(*args, timeout=timeout)


def _install(kube, rel: Release, *extra: str) -> subprocess.CompletedProcess:
    return _helm(kube, "install", rel.name, str(CHART), "-n", rel.namespace, "-f", str(rel.values_file),
                 "--wait", "--timeout", "4m", *extra)


def _gateway_url(kube, rel: Release) -> str:
    pod = wait_for("a Ready gateway pod", lambda: _ready_pods(kube, rel, "gateway"), timeout=120)[0]
    return f"http://{pod.status.pod_ip}:8080"


# --- the steps ----------------------------------------------------------------------------------------------

def _check_install(kube, pods, rel: Release, output: str, database_url: str) -> None:
    # NOTES.txt tells the platform team what to do next.
    for hint in ("kind: Tenant", f"voxfleet keys --namespace {rel.namespace} create --tenant acme",
                 "/v1/agents/concierge/sessions"):
        assert hint in output, f"NOTES.txt lacks {hint!r}:\n{output}"
    runner_nodes = {n for names in pods.nodes.values() for n in names}
    for component, command in (("operator", "voxfleet operator"), ("gateway", "voxfleet gateway")):
        ready = wait_for(f"{component} Ready", lambda c=component: _ready_pods(kube, rel, c), timeout=120)
        assert len(ready) == 1
        pod = ready[0]
        assert pod.spec.node_name in runner_nodes, f"{component} ran on {pod.spec.node_name}"
        # The pod runner started exactly the chart's container command as a real process.
        log = pods.log(rel.namespace, pod.metadata.name, component)
        assert f"starting {command.split()!r}" in log, log[-2000:]
    gateway = _ready_pods(kube, rel, "gateway")[0]
    assert httpx.get(f"http://{gateway.status.pod_ip}:8080/healthz", timeout=5).status_code == 200
    # The pre-install migration Job ran `voxfleet db upgrade` for real, before the gateway, which uses the store.
    assert migrations_runner.current_revisions(database_url) == migrations_runner.head_revisions()
    wait_for("the gateway's store up", lambda: httpx.get(f"http://{gateway.status.pod_ip}:8080/readyz", timeout=5)
             .json().get("database") == "up", timeout=30)
    operator = _ready_pods(kube, rel, "operator")[0]
    assert httpx.get(f"http://{operator.status.pod_ip}:8080/readyz", timeout=5).status_code == 200
    metrics = httpx.get(f"http://{operator.status.pod_ip}:8080/metrics", timeout=5).text
    assert "voxfleet_operator" in metrics
    _check_least_privilege(kube, rel)
    # The chart's Lease is the one the operator holds (its RBAC allows exactly that Lease).
    coordination = client.CoordinationV1Api(kube.api_client())
    wait_for("the operator holding the chart's Lease", lambda: coordination.read_namespaced_lease(
        "voxfleet-operator", rel.namespace).spec.holder_identity == operator.metadata.name, timeout=60)


def _check_least_privilege(kube, rel: Release) -> None:
    """What the service accounts may and may not do, as the apiserver's authorizer answers."""
    def can(account: str, *args: str) -> bool:
        result = kube.kubectl("auth", "can-i", *args, f"--as=system:serviceaccount:{rel.namespace}:{account}",
                              check=False)
        return result.stdout.strip() == "yes"

    operator, gateway = f"{rel.fullname}-operator", f"{rel.fullname}-gateway"
    allowed = [(operator, "patch", "deployments.apps", "-n", "tenant-x"), (operator, "create", "namespaces"),
               (operator, "patch", "voiceagents.voxfleet.dev/status", "-n", "tenant-x"),
               (operator, "update", "leases.coordination.k8s.io/voxfleet-operator", "-n", rel.namespace),
               (gateway, "watch", "pods", "-A"), (gateway, "patch", "voiceagents.voxfleet.dev", "-n", "tenant-x"),
               (gateway, "list", "secrets", "-n", rel.namespace)]
    refused = [(operator, "create", "clusterroles.rbac.authorization.k8s.io"),
               (operator, "create", "validatingadmissionpolicies.admissionregistration.k8s.io"),
               (operator, "create", "pods", "-n", "tenant-x"), (operator, "update", "deployments.apps", "-n", "x"),
               (operator, "update", "leases.coordination.k8s.io/other-lease", "-n", rel.namespace),
               (operator, "delete", "customresourcedefinitions.apiextensions.k8s.io"),
               (gateway, "get", "secrets", "-n", "tenant-x"), (gateway, "create", "secrets", "-n", rel.namespace),
               (gateway, "patch", "tenants.voxfleet.dev"), (gateway, "create", "pods", "-n", "tenant-x")]
    wrong = [f"{a} may not: {' '.join(args)}" for a, *args in allowed if not can(a, *args)]
    wrong += [f"{a} may: {' '.join(args)}" for a, *args in refused if can(a, *args)]
    assert not wrong, wrong


def _check_reconcile(kube, pods, rel: Release, tenant: dict, agent: dict) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(tenant))
    custom = client.CustomObjectsApi(kube.api_client())

    def tenant_ready():
        status = custom.get_cluster_custom_object("voxfleet.dev", "v1alpha1", "tenants", rel.shard).get("status", {})
        return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))

    wait_for(f"Tenant {rel.shard} Ready", tenant_ready, timeout=60)
    namespace = agent["metadata"]["namespace"]
    # The operator wrote the tenant namespace's own worker token, derived from the chart's root (never the root).
    platform_token = _core(kube).read_namespaced_secret("voxfleet-worker-token", rel.namespace).data["token"]
    written = wait_for("the namespace's worker token", lambda: _core(kube).read_namespaced_secret(
        "voxfleet-worker-token", namespace).data["token"], timeout=30)
    derived = base64.b64decode(written).decode() == token_for_namespace(base64.b64decode(platform_token), namespace)
    assert derived, "the namespace's worker token is not the one derived from the root"  # (no value printed)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(agent))

    def workers_ready():
        body = custom.get_namespaced_custom_object("voxfleet.dev", "v1alpha1", namespace, "voiceagents", "concierge")
        return (body.get("status") or {}).get("readyWorkers", 0) >= 1 and body

    body = wait_for("VoiceAgent concierge with a ready worker", workers_ready, timeout=180, interval=0.5)
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    worker = [p for p in _core(kube).list_namespaced_pod(namespace).items if _ready(p)]
    assert len(worker) == 1
    # Placed by the chart's worker settings (workers.nodeSelector/tolerations) in the agent's region.
    assert worker[0].spec.node_name in pods.nodes["us-east"]
    assert worker[0].spec.containers[0].command == ["voxfleet", "worker"]


def _check_session(kube, rel: Release, livekit) -> None:
    key = subprocess.run([str(VOXFLEET), "keys", "--kubeconfig", str(kube.kubeconfig), "--namespace", rel.namespace,
                          "create", "--tenant", rel.shard, "--description", "chart test"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    gateway = _gateway_url(kube, rel)

    def start():
        response = httpx.post(f"{gateway}/v1/agents/concierge/sessions", json={}, headers=headers, timeout=15)
        return response.status_code == 201 and response.json()  # 401 until the key Secret reaches the watch

    session = wait_for("the gateway starting a session", start, timeout=60, interval=0.5)
    assert session["region"] == "us-east"
    assert session["livekitUrl"] == livekit["us-east"].url
    # The worker the gateway dispatched to joins the session's room in the region's LiveKit.
    identities = wait_for("the agent in the LiveKit room",
                          lambda: _room_participants(livekit["us-east"], session["room"]), timeout=30, interval=0.5)
    assert identities, identities
    state = httpx.get(f"{gateway}/v1/sessions/{session['sessionId']}", headers=headers, timeout=10)
    assert state.status_code == 200 and state.json()["room"] == session["room"]
    assert httpx.delete(f"{gateway}/v1/sessions/{session['sessionId']}", headers=headers,
                        timeout=10).status_code == 204
    key_id = key.split("_")[1]
    subprocess.run([str(VOXFLEET), "keys", "--kubeconfig", str(kube.kubeconfig), "--namespace", rel.namespace,
                    "revoke", key_id], capture_output=True, text=True, timeout=60, check=True)


def _check_notes_commands(kube, rel: Release, output: str, tmp_path: Path) -> None:
    """NOTES.txt's steps 1-4 work as printed: pasted into bash from a checkout's root (charts/, .venv/bin/voxfleet),
    with only the tenant name swapped for this test's shard. The Tenant and VoiceAgent heredocs go to the apiserver
    as a server-side dry run (the shard's own are applied already); the key is really created, listed and revoked;
    the curl starts a real session at the gateway (the pod's address stands in for the port-forward: the world has
    no kubelet API), which the script then ends."""
    notes = output[output.index("NOTES:"):].replace("acme", rel.shard)
    applies = re.findall(r"^  kubectl apply -f - <<'YAML'\n.*?^YAML\n", notes, flags=re.S | re.M)
    assert [re.search(r"kind: (\w+)", block)[1] for block in applies] == ["Tenant", "VoiceAgent"], notes
    key_lines = [line for line in notes.splitlines() if re.match(r"  (KEY=\$\()?\.venv/bin/voxfleet keys ", line)]
    curl = re.search(r"^  curl .*?\n.*?\n", notes, flags=re.M)[0]
    assert len(key_lines) == 2 and "$KEY" in curl, notes
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "voxfleet").symlink_to(VOXFLEET)
    (checkout / "charts").symlink_to(CHART.parent)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kubectl").symlink_to(binaries.find("kubectl").path)
    gateway = _gateway_url(kube, rel)
    script = "\n".join([
        "set -euo pipefail",
        'kubectl() { command kubectl "$@" --dry-run=server; }  # the shard\'s Tenant and agent exist already',
        *applies, *key_lines,
        f"GATEWAY={gateway}",
        # A new key reaches the gateway through its watch: 401 for a moment.
        "for attempt in $(seq 60); do", "{ " + curl.strip() + "; } > session.json",
        "grep -q sessionId session.json && break; sleep 0.5; done",
        "ID=$(python3 -c 'import json; print(json.load(open(\"session.json\"))[\"sessionId\"])')",
        'curl -s -o /dev/null -w "ended %{http_code}\\n" -X DELETE "$GATEWAY/v1/sessions/$ID" '
        '-H "Authorization: Bearer $KEY"',
        f'.venv/bin/voxfleet keys --namespace {rel.namespace} revoke "$KEY"'])
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig), PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    result = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"NOTES commands failed ({result.returncode}):\n{result.stderr[-3000:]}"
    assert result.stdout.count("(server dry run)") == 2, result.stdout
    assert "ended 204" in result.stdout, result.stdout
    session = json.loads((checkout / "session.json").read_text())
    assert session["region"] == "us-east" and session["room"], session
    print(f"NOTES.txt: {len(applies)} heredocs, {len(key_lines)} key commands and the curl worked as printed")


def _room_participants(region, room: str) -> list[str]:
    from livekit import api

    async def listing() -> list[str]:
        lk = api.LiveKitAPI(region.http_url, region.api_key, region.api_secret)
        try:
            answer = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return [p.identity for p in answer.participants]
        finally:
            await lk.aclose()

    return asyncio.run(listing())


def _check_helm_test(kube, rel: Release) -> None:
    result = _helm(kube, "test", rel.name, "-n", rel.namespace, "--timeout", "2m")
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    # The hook objects delete themselves on success: nothing of the test stays in the release namespace.
    assert not _component_pods(kube, rel, "test")


def _check_upgrade(kube, rel: Release, tenant_namespace: str | None) -> None:
    core = _core(kube)
    token_before = core.read_namespaced_secret("voxfleet-worker-token", rel.namespace).data["token"]
    operator_before = {p.metadata.uid for p in _ready_pods(kube, rel, "operator")}
    gateway_before = {p.metadata.uid for p in _ready_pods(kube, rel, "gateway")}
    _helm(kube, "upgrade", rel.name, str(CHART), "-n", rel.namespace, "-f", str(rel.values_file),
          "--set", "gateway.latencyMs.us-east.us-east=2", "--wait", "--timeout", "4m")
    # Rolled: the gateway reads latencyMs; kept: the operator, which doesn't.
    gateway_after = wait_for("the old gateway pod gone", lambda: (
        pods := _component_pods(kube, rel, "gateway"),
        len(pods) == 1 and _ready(pods[0]) and {p.metadata.uid for p in pods})[-1], timeout=90)
    assert gateway_after.isdisjoint(gateway_before)
    assert {p.metadata.uid for p in _ready_pods(kube, rel, "operator")} == operator_before
    # Both Secrets kept: the story compares their digests (_check_platform_secrets), never printing a value.
    if tenant_namespace:  # the token the operator derived for the workers is the same still
        same = base64.b64decode(core.read_namespaced_secret("voxfleet-worker-token", tenant_namespace).data[
            "token"]).decode() == token_for_namespace(base64.b64decode(token_before), tenant_namespace)
        assert same, "the tenant namespace's worker token changed with the upgrade"
    gateway_env = json.loads(core.read_namespaced_config_map(f"{rel.fullname}-gateway", rel.namespace)
                             .data["VOXFLEET_LATENCY_MS"])
    assert gateway_env == {"us-east": {"us-east": 2}}
    assert base64.b64decode(token_before)  # a real generated token, not empty


def _platform_secrets(rel: Release) -> dict[str, str]:
    """Secret name -> the key that holds its value: the worker token and the session signing key."""
    return {"voxfleet-worker-token": "token", f"{rel.fullname}-session-key": "key"}


def _check_platform_secrets(kube, pods, rel: Release, outcome: str) -> dict[str, str]:
    """The hook Job ran `python -m voxfleet.platform_secrets` as a real process (its newest pod's log says what it
    did to each Secret, `outcome`, and holds no value), Helm deleted the Job and its RBAC once it succeeded, and
    the Secrets are not release objects. Returns each Secret's value digest (never the value: a failed comparison
    would print it)."""
    core = _core(kube)
    job = f"{rel.fullname}-secrets"
    job_pods = sorted((d for d in pods.pod_dir(rel.namespace, "x").parent.glob(f"{job}-*") if d.is_dir()),
                      key=lambda d: (d / "secrets.log").stat().st_mtime if (d / "secrets.log").exists() else 0)
    assert job_pods, f"no pod of the hook Job {job} ran on a runner node"
    log = pods.log(rel.namespace, job_pods[-1].name, "secrets")
    assert "starting ['python', '-m', 'voxfleet.platform_secrets'" in log, log[-2000:]
    digests = {}
    for name, key in _platform_secrets(rel).items():
        assert f"Secret {rel.namespace}/{name} (key {key}): {outcome}" in log, log[-2000:]
        secret = core.read_namespaced_secret(name, rel.namespace)
        value = base64.b64decode(secret.data[key]).decode()
        assert len(value) >= 32 and value not in log, f"{name}: a short value, or the value in the Job's log"
        assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "voxfleet-platform-secrets"
        assert secret.metadata.labels["app.kubernetes.io/instance"] == rel.name
        digests[name] = hashlib.sha256(value.encode()).hexdigest()
    manifest = _helm(kube, "get", "manifest", rel.name, "-n", rel.namespace).stdout
    assert "kind: Secret" not in manifest, "the release renders a Secret: a render would rotate it"
    leftovers = kube.kubectl("get", "job,serviceaccount,role,rolebinding", "-n", rel.namespace, "-o", "name",
                             "--field-selector", f"metadata.name={job}").stdout.split()
    assert not leftovers, f"the hook's objects outlived its success: {leftovers}"
    print(f"platform secrets ({outcome}): hook pod {job_pods[-1].name}, {len(job_pods)} hook run(s) so far")
    return digests


def _check_uninstall(kube, rel: Release) -> None:
    _helm(kube, "uninstall", rel.name, "-n", rel.namespace, "--wait", "--timeout", "2m")
    instance = f"app.kubernetes.io/instance={rel.name}"
    # The processes the pod runner ran for the release end with their pods.
    wait_for("operator and gateway pods gone", lambda: not _core(kube).list_namespaced_pod(
        rel.namespace, label_selector=instance).items, timeout=90, interval=0.5)
    left = kube.kubectl("get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings,leases,networkpolicies,"
                        "poddisruptionbudgets,ingresses", "-n", rel.namespace, "-o", "name").stdout.split()
    # The platform's Secrets stay: they are not the release's, so a second install finds and keeps them.
    allowed = {"configmap/kube-root-ca.crt", "serviceaccount/default", "secret/livekit-us-east",
               f"secret/{DATABASE_SECRET}",
               *(f"secret/{name}" for name in _platform_secrets(rel))}
    assert set(left) <= allowed, f"left in {rel.namespace}: {sorted(set(left) - allowed)}"
    cluster_left = kube.kubectl("get", "clusterroles,clusterrolebindings,validatingadmissionpolicies,"
                                "validatingadmissionpolicybindings", "-l", instance, "-o", "name").stdout.split()
    assert cluster_left == [], cluster_left
    # Helm's rule: CRDs stay (deleting them would delete every Tenant and VoiceAgent).
    crds = kube.kubectl("get", "crd", "-o", "name").stdout
    assert "tenants.voxfleet.dev" in crds and "voiceagents.voxfleet.dev" in crds


@contextlib.contextmanager
def _step(name: str, timings: list[tuple[str, float]]):
    """Time one step; the table is printed (shown with the failure, or with -s) to tell a slow step from a hang."""
    started = time.monotonic()
    try:
        yield
    finally:
        timings.append((name, round(time.monotonic() - started, 1)))
        print(f"chart install story: {timings}")


def test_install_reconcile_session_upgrade_test_uninstall(kube, pods, livekit, release, release_database, tmp_path):
    tenant, agent = tenant_and_agent(release)
    tenant_namespace = agent["metadata"]["namespace"]
    timings: list[tuple[str, float]] = []
    with _step("install", timings):
        output = _install(kube, release).stdout
        _check_install(kube, pods, release, output, release_database)
        secrets = _check_platform_secrets(kube, pods, release, "created")
    with _step("reconcile", timings):
        _check_reconcile(kube, pods, release, tenant, agent)
    with _step("NOTES commands", timings):
        _check_notes_commands(kube, release, output, tmp_path)
    with _step("session", timings):
        _check_session(kube, release, livekit)
    with _step("helm test", timings):
        _check_helm_test(kube, release)
    with _step("upgrade", timings):
        _check_upgrade(kube, release, tenant_namespace)
        assert _check_platform_secrets(kube, pods, release, "kept") == secrets
    with _step("delete tenant", timings):
        delete_tenant(kube, release, tenant_namespace)
    with _step("uninstall", timings):
        _check_uninstall(kube, release)
    with _step("second install", timings):
        # The hook finds the Secrets the first install made and keeps them: the same token and key as before.
        _helm(kube, "install", release.name, str(CHART), "-n", release.namespace, "-f", str(release.values_file),
              "--timeout", "4m")
        assert _check_platform_secrets(kube, pods, release, "kept") == secrets
        _helm(kube, "uninstall", release.name, "-n", release.namespace, "--wait", "--timeout", "2m")
