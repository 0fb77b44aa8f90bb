"""The telemetry wiring the operator writes for workers: their OTEL_* env, and the tenant NetworkPolicies' paths for
the monitoring namespace (scrape in, OTLP out).

The env is resolved the way a kubelet does it (the test world's own resolver, world/pod_env.py: downward API
fieldRefs, then `$(VAR)` expansion against what came before), and the result is read by the real OpenTelemetry
SDK's resource detector in a fresh process, so what is checked is what a worker's spans would carry. Whether the
policies admit exactly those paths, as a CNI would enforce them, is evaluated in tests/chart/test_chart_monitoring.py
against the objects the operator really applied.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.operator.specs import platform, worker_config
from voxfleet.api.voiceagent import EnvVar
from voxfleet.operator.ownership import Owner
from voxfleet.operator.pool_builder import build_deployment
from voxfleet.operator.tenant_builder import build_network_policies
from voxfleet.world.pod_env import EnvResolver

AGENT = Owner(kind="VoiceAgent", name="support", uid="uid-agent", namespace="tenant-acme")
TENANT = Owner(kind="Tenant", name="acme", uid="uid-tenant")
POD_NAME = "support-us-east-7c9d5b6f4-x2x9q"
TOKEN = "the-namespaces-worker-token"


def _resolved_env(deployment: dict) -> dict[str, str]:
    template = deployment["spec"]["template"]
    pod = {"metadata": {"name": POD_NAME, "namespace": "tenant-acme", **template["metadata"]},
           "spec": template["spec"], "status": {"podIP": "127.0.5.9"}}
    secrets = {"voxfleet-worker-token": {"token": TOKEN}, "llm-keys": {"openai": "sk-x"},
               "tool-keys": {"orders": "o", "crm": "c"}}
    resolver = EnvResolver(read_config_map=lambda namespace, name: {},
                           read_secret=lambda namespace, name: secrets[name])
    return resolver.resolve(pod, template["spec"]["containers"][0], {"HOSTNAME": POD_NAME})


def _sdk_resource(env: dict[str, str]) -> dict[str, str]:
    """The resource the OpenTelemetry SDK builds from this env (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES)."""
    code = ("import json; from opentelemetry.sdk.resources import Resource; "
            "print(json.dumps({k: str(v) for k, v in Resource.create().attributes.items()}))")
    otel_env = {k: v for k, v in env.items() if k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", **otel_env},
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def test_worker_spans_name_service_tenant_agent_region_namespace_and_pod():
    settings = platform(telemetry_otlp_endpoint="http://otel-collector.monitoring.svc:4318",
                        telemetry_resource_attributes={"deployment.environment": "prod"})
    env = _resolved_env(build_deployment(AGENT, worker_config(), "us-east", 1, settings))
    resource = _sdk_resource(env)
    print(f"worker resource attributes: {resource}")
    assert resource["service.name"] == "voxfleet-worker"
    assert resource["k8s.pod.name"] == POD_NAME  # downward API, expanded by the kubelet
    assert resource["k8s.namespace.name"] == "tenant-acme"
    assert (resource["voxfleet.tenant"], resource["voxfleet.agent"], resource["voxfleet.region"]) == (
        "acme", "support", "us-east")
    assert resource["deployment.environment"] == "prod"
    # A base URL: the exporter appends /v1/traces (the gateway's bug was a base URL used as the full one).
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring.svc:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio" and env["OTEL_TRACES_SAMPLER_ARG"] == "1.0"


def test_no_collector_means_no_exporter_env_but_the_identity_stays():
    env = _resolved_env(build_deployment(AGENT, worker_config(), "eu-west", 1, platform()))
    assert not {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER"} & set(env)
    assert "voxfleet.region=eu-west" in env["OTEL_RESOURCE_ATTRIBUTES"]


def test_an_extra_attribute_value_can_neither_add_attributes_nor_expand_a_variable():
    """A value with "," "=" and a kubelet `$(VAR)` reference stays one literal value: no second attribute, no
    tenant overridden, no worker token pulled into every span."""
    hostile = "x,voxfleet.tenant=other,k8s.pod.name=$(VOXFLEET_WORKER_TOKEN)"
    settings = platform(telemetry_resource_attributes={"note": hostile})
    env = _resolved_env(build_deployment(AGENT, worker_config(), "us-east", 1, settings))
    resource = _sdk_resource(env)
    assert resource["note"] == hostile
    assert resource["voxfleet.tenant"] == "acme" and resource["k8s.pod.name"] == POD_NAME
    assert TOKEN not in json.dumps(resource)


def test_the_platform_cannot_set_a_components_own_attribute():
    with pytest.raises(ValueError, match="set by each component itself"):
        platform(telemetry_resource_attributes={"voxfleet.tenant": "x"})
    with pytest.raises(ValueError, match="base URL"):
        platform(telemetry_otlp_endpoint="otel-collector:4318")


def test_a_tenant_env_stored_before_otel_was_reserved_cannot_rename_the_worker():
    """The schema now refuses OTEL_ names; a spec stored earlier (model_construct skips the check, as an old
    object in etcd would) still loses to the operator's entry, which comes later (the kubelet's rule)."""
    config = worker_config()
    smuggled = EnvVar.model_construct(name="OTEL_RESOURCE_ATTRIBUTES", value="voxfleet.tenant=globex",
                                      secret_key_ref=None)
    config.spec.worker.env.append(smuggled)
    env = _resolved_env(build_deployment(AGENT, config, "us-east", 1, platform()))
    assert _sdk_resource(env)["voxfleet.tenant"] == "acme"


def test_tenant_policies_open_scrape_and_otlp_to_the_monitoring_namespace_only_when_set():
    closed_ingress, closed_egress = build_network_policies(TENANT, "tenant-acme", platform())
    assert len(closed_ingress["spec"]["ingress"]) == 1
    settings = platform(monitoring_namespace="monitoring", worker_port=8080,
                        telemetry_otlp_endpoint="http://otel-collector.monitoring.svc:4318")
    ingress, egress = build_network_policies(TENANT, "tenant-acme", settings)
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert {"from": [monitoring], "ports": [{"protocol": "TCP", "port": 8080}]} in ingress["spec"]["ingress"]
    assert {"to": [monitoring], "ports": [{"protocol": "TCP", "port": 4318}]} in egress["spec"]["egress"]
    assert len(egress["spec"]["egress"]) == len(closed_egress["spec"]["egress"]) + 1


def test_otlp_port_follows_the_endpoint():
    assert platform(telemetry_otlp_endpoint="http://c.monitoring:4317").otlp_port() == 4317
    assert platform(telemetry_otlp_endpoint="https://otlp.example.com").otlp_port() == 443
    assert platform().otlp_port() is None
