"""The chart's `telemetry:` block rendered (no cluster): the standard OTEL_* env of the gateway and the operator, the
platform settings the operator turns into every worker's, metricsFrom defaulting to the monitoring namespace, and
the schema refusing what would break telemetry (a full /v1/traces URL as the base, a component's own attribute)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from voxfleet.api.settings import PlatformSettings

from .helm_render import container_env, find, helm, render, template_args

MONITORING = "monitoring"


def _values(tmp_path: Path, telemetry: dict) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"telemetry": telemetry}))
    return path


def test_gateway_and_operator_get_the_standard_otel_env(tmp_path, monkeypatch):
    values = _values(tmp_path, {"otlp": {"endpoint": "http://otel-collector.monitoring.svc:4318"},
                                "resourceAttributes": {"deployment.environment": "prod eu,x=$(SECRET)"},
                                "monitoringNamespace": MONITORING})
    manifests = render(values=(values,))
    for component in ("gateway", "operator"):
        deployment = find(manifests, "Deployment", f"voxfleet-{component}")
        env = container_env(deployment)
        names = [var["name"] for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
        assert env["OTEL_SERVICE_NAME"]["value"] == f"voxfleet-{component}"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.monitoring.svc:4318"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
        assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
        attributes = env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
        print(f"{component}: OTEL_RESOURCE_ATTRIBUTES={attributes}")
        # The hostile extra value is one encoded value; the pod's identity comes last, from the downward API vars
        # defined earlier in the list (the kubelet expands only those).
        assert attributes == ("deployment.environment=prod%20eu%2Cx%3D%24%28SECRET%29,"
                              "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)")
        assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
        assert names.index("POD_NAMESPACE") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    # What the operator reads for the workers, parsed by the settings class the components use.
    data = find(manifests, "ConfigMap", "voxfleet-platform")["data"]
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = PlatformSettings(_env_file=None)
    assert settings.telemetry_otlp_endpoint == "http://otel-collector.monitoring.svc:4318"
    assert settings.monitoring_namespace == MONITORING and settings.otlp_port() == 4318
    assert settings.telemetry_resource_attributes == {"deployment.environment": "prod eu,x=$(SECRET)"}
    # The scraper of the platform's /metrics defaults to the monitoring namespace.
    for name in ("voxfleet-gateway", "voxfleet-operator"):
        policy = find(manifests, "NetworkPolicy", name)
        metrics_rule = policy["spec"]["ingress"][-1]
        assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": MONITORING}}}]


def test_without_an_endpoint_only_the_identity_is_set_and_metrics_stay_open_to_any_namespace():
    manifests = render()
    env = container_env(find(manifests, "Deployment", "voxfleet-gateway"))
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env and env["OTEL_SERVICE_NAME"]["value"] == "voxfleet-gateway"
    assert "VOXFLEET_MONITORING_NAMESPACE" not in find(manifests, "ConfigMap", "voxfleet-platform")["data"]
    policy = find(manifests, "NetworkPolicy", "voxfleet-operator")
    assert policy["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {}}]


@pytest.mark.parametrize("telemetry, complaint", [
    ({"otlp": {"endpoint": "http://otel:4318/v1/traces"}}, "/telemetry/otlp/endpoint"),
    ({"otlp": {"endpoint": "otel:4318"}}, "/telemetry/otlp/endpoint"),
    # (helm names a wrong path for property names; the name itself is right)
    ({"resourceAttributes": {"voxfleet.tenant": "x"}}, "invalid propertyName 'voxfleet.tenant'"),
    ({"resourceAttributes": {"bad key": "x"}}, "invalid propertyName 'bad key'"),
    ({"monitoringNamespace": "Monitoring"}, "/telemetry/monitoringNamespace"),
    ({"samplerArg": "2"}, "/telemetry/samplerArg"),
])
def test_the_schema_refuses_what_would_break_telemetry(tmp_path, telemetry, complaint):
    result = helm(*template_args(values=(_values(tmp_path, telemetry),)), check=False)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr
