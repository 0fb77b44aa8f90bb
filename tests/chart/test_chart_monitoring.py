"""A helm install of charts/voxfleet in the test world with the monitoring values (telemetry.monitoringNamespace,
telemetry.otlp.endpoint, ServiceMonitors and the PodMonitor), a tenant's worker running, and a real Prometheus
configured the way the Prometheus Operator would configure it from the release's monitors (read back from the
apiserver; tests/telemetry/monitor_scrape_configs.py) scraping the worker's, the gateway's and the operator's
/metrics; spans of the gateway and the worker reaching a real OTEL collector at the chart's OTLP base URL.

NetworkPolicies are enforced by the cluster's CNI, and the test world has none: here every connection succeeds
whatever the policies say. So the paths are also judged against the real policy objects the release and the
operator wrote (read from the apiserver) by an evaluator of the NetworkPolicy semantics
(tests/chart/network_policy_semantics.py): the monitoring namespace may scrape the worker and the platform's
metrics ports and the worker may send OTLP there, while another namespace is refused the same paths. Prometheus
and the collector run as host processes here; for the evaluation they stand where a cluster would run them, as
pods of the monitoring namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client

from tests.telemetry.conftest import module_otel_collector, prometheus  # noqa: F401 - fixtures used below
from tests.telemetry.monitor_scrape_configs import scrape_configs_for_monitors
from tests.gateway.worker_pods import worker_labels
from tests.world.waiting import wait_for

from . import monitoring_crds
from .helm_render import CHART
from .network_policy_semantics import Endpoint, NetworkPolicies
from .world_release import Release, delete_tenant, tenant_and_agent, world_values

pytestmark = pytest.mark.world

VOXFLEET = Path(sys.executable).with_name("voxfleet")
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus"}
COLLECTOR_LABELS = {"app.kubernetes.io/name": "opentelemetry-collector"}


def _ready(pod) -> bool:
    return pod.status.phase == "Running" and not pod.metadata.deletion_timestamp and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


class Monitored:
    """The release, its tenant's worker, the monitoring namespace and a namespace that is neither."""

    def __init__(self, kube, release: Release, monitoring: str, outsider: str, tenant_namespace: str,
                 collector_endpoint: str):
        self.kube, self.release, self.monitoring, self.outsider = kube, release, monitoring, outsider
        self.tenant_namespace = tenant_namespace
        self.collector_endpoint = collector_endpoint
        self.core = client.CoreV1Api(kube.api_client())

    def pods(self, namespace: str, selector: str = "") -> list:
        return [p for p in self.core.list_namespaced_pod(namespace, label_selector=selector).items if _ready(p)]

    def component(self, component: str):
        [pod] = self.pods(self.release.namespace, f"app.kubernetes.io/instance={self.release.name},"
                                                  f"app.kubernetes.io/component={component}")
        return pod

    def worker(self):
        [pod] = self.pods(self.tenant_namespace, "voxfleet.dev/agent=concierge")
        return pod

    def objects(self, kinds: str, namespace: str) -> list[dict]:
        return json.loads(self.kube.kubectl("get", kinds, "-n", namespace, "-o", "json").stdout)["items"]


@pytest.fixture(scope="module")
def monitored(kube, pods, livekit, module_otel_collector, tmp_path_factory):  # noqa: F811 - the imported fixture
    monitoring_crds.install(kube)
    suffix = uuid.uuid4().hex[:6]
    monitoring = kube.new_namespace("monitoring")
    outsider = kube.new_namespace("outsider")
    namespace = kube.new_namespace("voxfleet-mon")
    shard = f"mon-{suffix}"
    values = world_values(pods, livekit, shard, namespace)
    values["telemetry"] = {"otlp": {"endpoint": module_otel_collector.otlp_http_endpoint,
                                    "protocol": "http/protobuf"},
                           "resourceAttributes": {"deployment.environment": "test-world"},
                           "monitoringNamespace": monitoring}
    values["monitoring"] = {"serviceMonitor": {"enabled": True, "interval": "5s"},
                            "podMonitor": {"enabled": True, "interval": "5s"}}
    values_file = tmp_path_factory.mktemp("chart-monitoring") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    us_east = livekit["us-east"]
    kube.kubectl("-n", namespace, "create", "secret", "generic", "livekit-us-east",
                 f"--from-literal=api-key={us_east.api_key}", f"--from-literal=api-secret={us_east.api_secret}")
    release = Release(name=f"vf-{suffix}", namespace=namespace, shard=shard, values_file=values_file)
    tenant, agent = tenant_and_agent(release)
    tenant_namespace = agent["metadata"]["namespace"]
    kube.helm("install", release.name, str(CHART), "-n", namespace, "-f", str(values_file), "--wait",
              "--timeout", "4m", timeout=300)
    try:
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(tenant))
        wait_for(f"namespace {tenant_namespace}", lambda: kube.kubectl(
            "get", "namespace", tenant_namespace, check=False).returncode == 0, timeout=60)
        wait_for("the worker-token Secret", lambda: kube.kubectl(
            "get", "secret", "voxfleet-worker-token", "-n", tenant_namespace, check=False).returncode == 0,
            timeout=60)
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(agent))
        state = Monitored(kube, release, monitoring, outsider, tenant_namespace,
                          module_otel_collector.otlp_http_endpoint)
        wait_for("a Ready worker", lambda: state.pods(tenant_namespace, "voxfleet.dev/agent=concierge"),
                 timeout=180, interval=0.5)
        yield state
    finally:
        delete_tenant(kube, release, tenant_namespace)
        kube.helm("uninstall", release.name, "-n", namespace, "--wait", "--timeout", "2m", check=False)
        for name in (namespace, monitoring, outsider):
            kube.delete_namespace(name)


def _process_env(pod) -> dict[str, str]:
    """The environment of the process the pod runner started for the pod's container (containerID carries its
    pid: voxfleet-world://<pid>), as the kubelet would have resolved it."""
    pid = pod.status.container_statuses[0].container_id.removeprefix("voxfleet-world://")
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _endpoint(pod) -> Endpoint:
    ports = {p.name: p.container_port for c in pod.spec.containers for p in c.ports or [] if p.name}
    return Endpoint(ip=pod.status.pod_ip, namespace=pod.metadata.namespace, labels=pod.metadata.labels or {},
                    named_ports=ports)


def _policies(state: Monitored) -> NetworkPolicies:
    """Every NetworkPolicy the release and the operator wrote, and every namespace's labels, from the apiserver."""
    objects = (state.objects("networkpolicies", state.release.namespace)
               + state.objects("networkpolicies", state.tenant_namespace)
               + state.objects("networkpolicies", state.monitoring) + state.objects("networkpolicies", state.outsider))
    namespaces = {ns.metadata.name: ns.metadata.labels or {} for ns in state.core.list_namespace().items}
    return NetworkPolicies(objects, namespaces)


def test_the_worker_carries_its_otel_identity_as_the_kubelet_resolved_it(monitored):
    worker = monitored.worker()
    env = _process_env(worker)
    attributes = dict(item.split("=", 1) for item in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    print(f"worker OTEL env: {({k: v for k, v in env.items() if k.startswith('OTEL_')})}")
    assert attributes["k8s.pod.name"] == worker.metadata.name  # the downward API, $(VAR)-expanded
    assert attributes["k8s.namespace.name"] == monitored.tenant_namespace
    assert (attributes["voxfleet.tenant"], attributes["voxfleet.agent"], attributes["voxfleet.region"]) == (
        monitored.release.shard, "concierge", "us-east")
    assert attributes["deployment.environment"] == "test-world"
    assert env["OTEL_SERVICE_NAME"] == "voxfleet-worker"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == monitored.collector_endpoint  # a base URL, as the chart says
    gateway_env = _process_env(monitored.component("gateway"))
    assert gateway_env["OTEL_SERVICE_NAME"] == "voxfleet-gateway"
    assert f"k8s.pod.name={monitored.component('gateway').metadata.name}" in gateway_env["OTEL_RESOURCE_ATTRIBUTES"]


def test_prometheus_scrapes_the_worker_and_the_platform_through_the_charts_monitors(monitored, kube, prometheus):  # noqa: F811
    release = monitored.release
    monitors = monitored.objects("podmonitors,servicemonitors,services", release.namespace)
    kinds = sorted(o["kind"] for o in monitors if o["kind"] != "Service")
    assert kinds == ["PodMonitor", "ServiceMonitor", "ServiceMonitor"], kinds
    prom = prometheus(scrape_configs_for_monitors(monitors, kubeconfig=kube.kubeconfig, interval="1s"))
    worker = monitored.worker()
    query = f'voxfleet_worker_ready{{namespace="{monitored.tenant_namespace}",pod="{worker.metadata.name}"}}'
    [series] = prom.wait_for_series(query, timeout=60)
    print(f"scraped through the PodMonitor: {series['metric']} = {series['value'][1]}")
    assert series["value"][1] == "1"
    assert series["metric"]["tenant"] == release.shard and series["metric"]["job"].startswith(release.namespace)
    # The platform's own /metrics through the ServiceMonitors (the gateway's operational port, the operator's).
    for component, metric in (("gateway", "voxfleet_gateway"), ("operator", "voxfleet_operator")):
        pod = monitored.component(component).metadata.name
        found = prom.wait_for_series(f'{{__name__=~"{metric}_.+",namespace="{release.namespace}",pod="{pod}"}}',
                                     timeout=60)
        print(f"{component}: {len(found)} series scraped")

    # The same paths as a CNI would judge them from the objects the release and the operator wrote.
    policies = _policies(monitored)
    scraper = Endpoint(ip="127.0.0.1", namespace=monitored.monitoring, labels=PROMETHEUS_LABELS)
    intruder = Endpoint(ip="127.0.0.1", namespace=monitored.outsider, labels=PROMETHEUS_LABELS)
    gateway, operator = monitored.component("gateway"), monitored.component("operator")
    paths = {"worker metrics": (_endpoint(worker), 8080), "gateway /metrics": (_endpoint(gateway), 9090),
             "operator /metrics": (_endpoint(operator), 8080)}
    for name, (target, port) in paths.items():
        allowed, refused = policies.allows(scraper, target, port), policies.allows(intruder, target, port)
        print(f"{name}: monitoring namespace -> {allowed.allowed} ({allowed.why}); "
              f"another namespace -> {refused.allowed} ({refused.why})")
        assert allowed, f"{name}: the monitoring namespace is refused: {allowed.why}"
        assert not refused, f"{name}: another namespace may scrape: {refused.why}"
    # Scraping never opens the gateway's tenant API port wider than it was, nor other worker ports.
    assert not policies.allows(scraper, _endpoint(worker), 9999)


def test_spans_reach_the_collector_and_the_otlp_path_is_open_only_to_the_monitoring_namespace(
        monitored, module_otel_collector):  # noqa: F811
    release = monitored.release
    worker = monitored.worker()
    policies = _policies(monitored)
    port = int(monitored.collector_endpoint.rsplit(":", 1)[1])
    collector = Endpoint(ip="127.0.0.1", namespace=monitored.monitoring, labels=COLLECTOR_LABELS)
    elsewhere = Endpoint(ip="127.0.0.1", namespace=monitored.outsider, labels=COLLECTOR_LABELS)
    allowed = policies.allows(_endpoint(worker), collector, port)
    print(f"worker -> collector :{port}: {allowed.allowed} ({allowed.why})")
    assert allowed, allowed.why
    for target, target_port in ((elsewhere, port), (collector, 9999)):
        refused = policies.allows(_endpoint(worker), target, target_port)
        print(f"worker -> {target.namespace}:{target_port}: {refused.allowed} ({refused.why})")
        assert not refused, refused.why

    # A real session through the release's gateway: its spans and the worker's reach the collector, each
    # naming its pod.
    api_key = subprocess.run([str(VOXFLEET), "keys", "--kubeconfig", str(monitored.kube.kubeconfig), "--namespace",
                              release.namespace, "create", "--tenant", release.shard, "--description", "monitoring"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    gateway_pod = monitored.component("gateway")
    gateway = f"http://{gateway_pod.status.pod_ip}:8080"

    def start():
        response = httpx.post(f"{gateway}/v1/agents/concierge/sessions", json={},
                              headers={"Authorization": f"Bearer {api_key}"}, timeout=15)
        return response.status_code == 201 and response.json()

    session = wait_for("a session", start, timeout=60, interval=0.5)
    httpx.delete(f"{gateway}/v1/sessions/{session['sessionId']}", headers={"Authorization": f"Bearer {api_key}"},
                 timeout=10)

    def from_both(spans):
        services = {(s.resource.get("service.name"), s.resource.get("k8s.pod.name")) for s in spans}
        return (("voxfleet-gateway", gateway_pod.metadata.name) in services
                and ("voxfleet-worker", worker.metadata.name) in services)

    spans = module_otel_collector.wait_for_spans(from_both, timeout=60)
    worker_span = next(s for s in spans if s.resource.get("k8s.pod.name") == worker.metadata.name)
    print(f"session {session['sessionId']}: {len(spans)} spans; a worker span's resource: {worker_span.resource}")
    assert worker_span.resource["voxfleet.tenant"] == release.shard
    assert worker_span.resource["k8s.namespace.name"] == monitored.tenant_namespace


# A worker process that lies about whose it is: the metrics a tenant's own image (workers.allowedImages) could serve.
LYING_METRICS = """
import http.server, os
BODY = b'voxfleet_worker_ready{tenant="victim",agent="their-agent",region="eu-west"} 1\\n'
class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(BODY)
http.server.HTTPServer((os.environ["POD_IP"], 8080), Metrics).serve_forever()
"""


def test_a_worker_cannot_claim_another_tenant_in_its_metrics(monitored, kube, pods, prometheus):  # noqa: F811
    """tenant, agent and region on worker series come from the labels the operator put on the pod (the chart's
    PodMonitor relabels them), not from the process: a lying process's own values are dropped."""
    release = monitored.release
    name = f"liar-{uuid.uuid4().hex[:6]}"
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": worker_labels(release.shard, "liar", "us-east")},
           "spec": {"containers": [{
               "name": "worker", "image": "tenant/own-worker", "command": [sys.executable, "-c", LYING_METRICS],
               "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
               "ports": [{"name": "control", "containerPort": 8080, "protocol": "TCP"}],
               "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 10001,
                                   "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}],
               **pods.placement("us-east")}}
    monitored.core.create_namespaced_pod(monitored.tenant_namespace, pod)
    try:
        monitors = monitored.objects("podmonitors", release.namespace)
        prom = prometheus(scrape_configs_for_monitors(monitors, kubeconfig=kube.kubeconfig, interval="1s"))
        [series] = prom.wait_for_series(f'voxfleet_worker_ready{{pod="{name}"}}', timeout=60)
        print(f"the lying worker's series: {series['metric']}")
        assert (series["metric"]["tenant"], series["metric"]["agent"], series["metric"]["region"]) == (
            release.shard, "liar", "us-east")
        assert not [label for label in series["metric"] if label.startswith("exported_")]
        assert prom.query('voxfleet_worker_ready{tenant="victim"}') == []
    finally:
        monitored.core.delete_namespaced_pod(name, monitored.tenant_namespace, grace_period_seconds=0)

