"""The chart's PodMonitor and ServiceMonitors, turned into scrape configs the way the Prometheus Operator would,
are accepted by promtool and make a real Prometheus scrape exactly the pods they select, with the operator's
target labels (which a scraped process cannot overwrite)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client

from tests.chart.helm_render import MONITORING_API_VERSIONS, render
from tests.telemetry.monitor_scrape_configs import label_selector_matches, scrape_configs_for_monitors
from voxfleet.world import binaries

RELEASE = "t"
MONITORS_ON = ("monitoring.serviceMonitor.enabled=true", "monitoring.podMonitor.enabled=true")

# Serves Prometheus text on the pod IP and the port named in its spec; one of its metrics claims a namespace label,
# as a hostile process might, to hide its numbers under another tenant's.
PROBE_POD_SCRIPT = """\
import os, sys, time
from prometheus_client import Counter, Gauge, start_http_server
ticks = Counter("telemetry_probe_ticks", "Ticks of the probe pod")
Gauge("telemetry_probe_claims", "A label the target must not be able to set", ["namespace"]).labels(
    "someone-else").set(1)
start_http_server(int(sys.argv[1]), addr=os.environ["POD_IP"])
while True:
    ticks.inc()
    time.sleep(0.2)
"""


def _chart_objects(namespace: str) -> list[dict]:
    return render(release=RELEASE, namespace=namespace, set_values=MONITORS_ON, api_versions=MONITORING_API_VERSIONS)


def test_translation_of_the_chart_monitors_passes_promtool_in_both_forms(tmp_path: Path):
    objects = _chart_objects("voxfleet-system")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                                          "contexts": []}))
    promtool = binaries.find("promtool").path
    for form in ("endpoints", "pods"):
        configs = scrape_configs_for_monitors(objects, kubeconfig=kubeconfig, service_discovery=form)
        names = sorted(c["job_name"] for c in configs)
        print(f"{form}: {names}")
        assert names == ["podMonitor/voxfleet-system/t-voxfleet-workers/0",
                         "serviceMonitor/voxfleet-system/t-voxfleet-gateway/0",
                         "serviceMonitor/voxfleet-system/t-voxfleet-operator/0"]
        assert all(c["honor_labels"] is False for c in configs)
        path = tmp_path / f"{form}.yml"
        path.write_text(yaml.safe_dump({"scrape_configs": configs}, sort_keys=False))
        checked = subprocess.run([str(promtool), "check", "config", "--syntax-only", str(path)], capture_output=True,
                                 text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    workers = next(c for c in configs if c["job_name"].startswith("podMonitor/"))
    assert "namespaces" not in workers["kubernetes_sd_configs"][0]  # namespaceSelector any: every tenant namespace
    assert workers["scrape_interval"] == "15s" and workers["metrics_path"] == "/metrics"


def test_label_selector_semantics():
    selector = {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "In", "values": ["x", "y"]},
                                                                 {"key": "c", "operator": "DoesNotExist"}]}
    assert label_selector_matches(selector, {"a": "1", "b": "y"})
    assert not label_selector_matches(selector, {"a": "1", "b": "z"})
    assert not label_selector_matches(selector, {"a": "1", "b": "x", "c": ""})
    assert not label_selector_matches(selector, {"b": "x"})


def _probe_pod(name: str, labels: dict, port_name: str, port: int, placement: dict) -> dict:
    container = {"name": "probe", "image": "python:3.11",
                 "command": [sys.executable, "-c", PROBE_POD_SCRIPT, str(port)],
                 "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                 "ports": [{"name": port_name, "containerPort": port}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [container], **placement}}


def test_a_real_prometheus_scrapes_what_the_chart_monitors_select(prometheus, world, kube, namespace, pods):
    objects = _chart_objects(namespace)
    worker_labels = {"app.kubernetes.io/name": "voxfleet", "app.kubernetes.io/component": "voice-worker"}
    gateway_labels = {"app.kubernetes.io/name": "voxfleet", "app.kubernetes.io/component": "gateway",
                      "app.kubernetes.io/instance": RELEASE}
    placement = pods.placement("us-east")
    probe_pods = [
        _probe_pod("worker", worker_labels, "control", 9201, placement),
        _probe_pod("stranger", {"app": "stranger"}, "control", 9202, placement),  # not selected by any monitor
        _probe_pod("worker-other-port", worker_labels, "debug", 9203, placement),  # selected, port not named
        _probe_pod("gateway", gateway_labels, "operational", 9204, placement),
    ]
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        for pod in probe_pods:
            core.create_namespaced_pod(namespace, pod)

    started = time.monotonic()
    prom = prometheus(scrape_configs_for_monitors(objects, kubeconfig=world.kubeconfig, interval="1s"))
    workers_job = f"podMonitor/{namespace}/{RELEASE}-voxfleet-workers/0"
    gateway_job = f"serviceMonitor/{namespace}/{RELEASE}-voxfleet-gateway/0"

    def ours_up():
        # The workers' PodMonitor looks at every namespace: other tests' workers may be there too; judge ours.
        found = [t for t in prom.targets() if t["labels"].get("namespace") == namespace and t["health"] == "up"]
        return found if {t["scrapePool"] for t in found} == {workers_job, gateway_job} else None
    targets = prom.wait_for(f"the probe pods in {namespace} scraped", ours_up, timeout=90)
    print(f"chart monitors' targets in {namespace} up {time.monotonic() - started:.1f} s after Prometheus started: "
          f"{sorted((t['scrapePool'], t['labels']['pod']) for t in targets)}")
    assert sorted(t["labels"]["pod"] for t in targets) == ["gateway", "worker"]
    worker = next(t for t in targets if t["scrapePool"] == workers_job)
    assert {k: worker["labels"][k] for k in ("job", "namespace", "pod", "container", "endpoint")} == {
        "job": f"{namespace}/{RELEASE}-voxfleet-workers", "namespace": namespace, "pod": "worker",
        "container": "probe", "endpoint": "control"}
    gateway = next(t for t in targets if t["scrapePool"] == gateway_job)
    assert gateway["labels"]["job"] == f"{RELEASE}-voxfleet-gateway-operational"
    assert gateway["labels"]["service"] == f"{RELEASE}-voxfleet-gateway-operational"
    assert gateway["scrapeUrl"].endswith(":9204/metrics")

    claims = prom.wait_for_series(f'telemetry_probe_claims{{pod="worker", namespace="{namespace}"}}')
    assert claims[0]["metric"]["exported_namespace"] == "someone-else"
    assert prom.query('telemetry_probe_claims{namespace="someone-else"}') == []
