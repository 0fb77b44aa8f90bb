"""The test world's telemetry servers, exercised as the platform's tests use them (tests/telemetry/conftest.py):
the real OpenTelemetry SDK exports to the real collector over both OTLP transports, Prometheus scrapes a real
pod found through the apiserver, and promtool checks and unit-tests rules. Each judged time is printed."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from kubernetes import client
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from voxfleet.world import binaries
from voxfleet.world.prometheus import PromQLError, kubernetes_sd, static_scrape_config

# The fixtures live with the telemetry tests; importing them makes them this module's too.
from tests.telemetry.conftest import otel_collector, prometheus  # noqa: F401

# A pod that serves Prometheus text on its pod IP, as a worker serves /metrics on its control port.
METRICS_POD_SCRIPT = """\
import os, time
from prometheus_client import Counter, start_http_server
served = Counter("telemetry_probe_ticks", "Ticks of the probe pod")
start_http_server(9102, addr=os.environ["POD_IP"])
while True:
    served.inc()
    time.sleep(0.2)
"""


def _tracer(exporter, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_collector_writes_the_spans_an_sdk_exports(otel_collector, protocol):
    if protocol == "grpc":
        exporter = GrpcSpanExporter(endpoint=otel_collector.otlp_grpc_endpoint, insecure=True)
    else:  # the base URL + the signal path, as OTEL_EXPORTER_OTLP_ENDPOINT is meant to be used
        exporter = HttpSpanExporter(endpoint=f"{otel_collector.otlp_http_endpoint}/v1/traces")
    provider = _tracer(exporter, f"probe-{protocol}")
    tracer = provider.get_tracer("tests.world")
    sent = time.monotonic()
    with tracer.start_as_current_span("session request", attributes={"voxfleet.tenant": "acme"}) as parent:
        with tracer.start_as_current_span("dispatch") as child:
            child.add_event("worker answered", {"latency_ms": 12})
    provider.shutdown()

    spans = otel_collector.wait_for_spans(lambda spans: len(spans) >= 2)
    print(f"{protocol}: 2 spans readable from the collector's file {time.monotonic() - sent:.2f} s after export")
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"session request", "dispatch"}
    root, dispatch = by_name["session request"], by_name["dispatch"]
    assert root.trace_id == f"{parent.get_span_context().trace_id:032x}"
    assert dispatch.trace_id == root.trace_id and dispatch.parent_span_id == root.span_id and root.is_root
    assert root.service_name == f"probe-{protocol}" and root.attributes == {"voxfleet.tenant": "acme"}
    assert dispatch.events == [{"name": "worker answered", "attributes": {"latency_ms": 12}}]
    assert list(otel_collector.traces()) == [root.trace_id]


def test_collector_drains_on_stop_so_a_final_read_is_complete(otel_collector):
    provider = _tracer(HttpSpanExporter(endpoint=f"{otel_collector.otlp_http_endpoint}/v1/traces"), "drain")
    tracer = provider.get_tracer("tests.world")
    for i in range(50):
        with tracer.start_as_current_span(f"turn {i}"):
            pass
    provider.shutdown()
    started = time.monotonic()
    otel_collector.stop()  # no waiting for the batch timeout: stopping flushes it
    print(f"collector stopped in {time.monotonic() - started:.2f} s with 50 spans in flight")
    assert sorted(s.name for s in otel_collector.spans()) == sorted(f"turn {i}" for i in range(50))


PROBE_RULES = """\
groups:
  - name: probe
    rules:
      - record: probe:answer:doubled
        expr: telemetry_probe_answer * 2
      - alert: ProbeAnswered
        expr: telemetry_probe_answer > 40
        labels: {severity: info}
"""


def test_prometheus_scrapes_a_static_target_evaluates_rules_and_reports_bad_promql(prometheus, tmp_path):
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    Gauge("telemetry_probe_answer", "A fixed value to read back", registry=registry).set(42)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    rules = tmp_path / "rules.yaml"
    rules.write_text(PROBE_RULES)
    try:
        started = time.monotonic()
        prom = prometheus([static_scrape_config("probe", [f"127.0.0.1:{server.server_port}"])], rule_files=[rules])
        ready = time.monotonic() - started
        prom.wait_for_targets_up("probe")
        assert prom.wait_for_series("telemetry_probe_answer")[0]["metric"]["job"] == "probe"
        first_sample = time.monotonic() - started
        assert prom.value("telemetry_probe_answer") == 42.0
        prom.wait_for_series("probe:answer:doubled")
        firing = prom.wait_for("ProbeAnswered firing", lambda: [a for a in prom.alerts() if a["state"] == "firing"])
        print(f"prometheus ready in {ready:.2f} s; first sample queryable {first_sample:.2f} s, recording rule and "
              f"alert firing {time.monotonic() - started:.2f} s after start")
        assert prom.value("probe:answer:doubled") == 84.0
        assert firing[0]["labels"] == {"alertname": "ProbeAnswered", "severity": "info", "job": "probe",
                                       "instance": f"127.0.0.1:{server.server_port}"}
        assert all(r["health"] == "ok" for g in prom.rule_groups() for r in g["rules"])
        with pytest.raises(PromQLError, match="bad_data"):
            prom.query("sum(")
        prom.reload([static_scrape_config("renamed", [f"127.0.0.1:{server.server_port}"])])
        prom.wait_for_targets_up("renamed")
        assert {t["scrapePool"] for t in prom.targets()} == {"renamed"}
        with pytest.raises(PromQLError, match="refused"):
            prom.reload([{"job_name": "broken", "scrape_interval": "soon"}])
    finally:
        server.shutdown()
        thread.join()


def test_prometheus_discovers_and_scrapes_a_pod_through_the_apiserver(prometheus, world, kube, namespace, pods):
    container = {
        "name": "probe", "image": "python:3.11", "command": [sys.executable, "-c", METRICS_POD_SCRIPT],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "metrics", "containerPort": 9102}],
    }
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "labels": {"app": "probe"}},
           "spec": {"containers": [container], **pods.placement("us-east")}}
    with kube.api_client() as api:
        client.CoreV1Api(api).create_namespaced_pod(namespace, pod)
    scrape = {
        "job_name": "pods", "scrape_interval": "1s", "scrape_timeout": "1s",
        "kubernetes_sd_configs": [kubernetes_sd("pod", kubeconfig=world.kubeconfig, namespaces=[namespace])],
        "relabel_configs": [
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }
    started = time.monotonic()
    prom = prometheus([scrape])
    target = prom.wait_for_targets_up("pods", timeout=60)[0]
    series = prom.wait_for_series(f'telemetry_probe_ticks_total{{pod="probe"}}')
    print(f"pod discovered and scraped at {target['scrapeUrl']} {time.monotonic() - started:.2f} s after start")
    with kube.api_client() as api:
        pod_ip = client.CoreV1Api(api).read_namespaced_pod("probe", namespace).status.pod_ip
    assert target["scrapeUrl"] == f"http://{pod_ip}:9102/metrics"
    assert float(series[0]["value"][1]) > 0


RULES = """\
groups:
  - name: probe
    rules:
      - alert: ProbeDown
        expr: up{job="probe"} == 0
        for: 1m
        labels: {severity: page}
"""

RULE_TESTS = """\
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="probe", instance="a"}'
        values: '0x5'
      - series: 'up{job="probe", instance="b"}'
        values: '1x5'
    alert_rule_test:
      - eval_time: 3m
        alertname: ProbeDown
        exp_alerts:
          - exp_labels: {severity: page, job: probe, instance: a}
"""


def test_promtool_unit_tests_rules_and_rejects_bad_promql(tmp_path):
    promtool = binaries.find("promtool").path
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "rules_test.yaml").write_text(RULE_TESTS)
    started = time.monotonic()
    passed = subprocess.run([str(promtool), "test", "rules", "rules_test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    print(f"promtool test rules: exit {passed.returncode} in {time.monotonic() - started:.2f} s")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    # The same alert expected quiet must fail: promtool really evaluates, it does not rubber-stamp.
    (tmp_path / "rules_test.yaml").write_text(RULE_TESTS.replace("exp_labels: {severity: page, job: probe, "
                                                                 "instance: a}", "exp_labels: {severity: page, "
                                                                 "job: probe, instance: b}"))
    failed = subprocess.run([str(promtool), "test", "rules", "rules_test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode == 1 and "ProbeDown" in failed.stdout + failed.stderr
    bad = subprocess.run([str(promtool), "check", "rules", "/dev/stdin"], input="groups: [{name: x, rules: "
                         "[{alert: A, expr: 'sum('}]}]", capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "parse error" in bad.stderr + bad.stdout


def test_build_script_and_binaries_agree_on_every_server_and_version():
    """`make setup` runs build-servers.sh with no names: it must build every server binaries.py looks for, under
    the cache name (version) binaries.py expects, or a fresh machine builds them again mid-test."""
    listed = subprocess.run(["bash", str(binaries.BUILD_SCRIPT), "--versions"], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    built_by_default = dict(line.split() for line in listed.splitlines())
    assert built_by_default == binaries.VERSIONS


def test_the_collector_module_pins_every_collector_module_at_one_release():
    """Collector modules from two releases build but misbehave (the draft wrapper mixed v1.67 and v1.71 confmap);
    and the cache name carries the release, so the cached binary is the one go.mod describes."""
    go_mod = (binaries.BUILD_SCRIPT.parent / "otelcol" / "go.mod").read_text()
    pinned = dict(re.findall(r"^\s*((?:go\.opentelemetry\.io/collector|github\.com/open-telemetry/"
                             r"opentelemetry-collector-contrib)\S*) (v\S+)", go_mod, re.MULTILINE))
    unstable = {v for v in pinned.values() if v.startswith("v0.")}  # v0.x modules carry the release number
    stable = {v for v in pinned.values() if not v.startswith("v0.")}  # v1.x modules move in step with it
    print(f"{len(pinned)} collector modules: releases {sorted(unstable)}, stable modules at {sorted(stable)}")
    assert unstable == {binaries.VERSIONS["otelcol"]} and len(stable) == 1
