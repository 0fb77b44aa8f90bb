"""ServiceMonitor, PodMonitor and PrometheusRule CRDs for the test world, so the chart's monitoring objects meet a real apiserver.

The Prometheus Operator cannot run here and its CRDs are not vendored, so these are written from its API
reference: strict structural schemas (no preserved unknown fields) for the parts of the two kinds that a chart
sets, so a misspelt or misplaced field is refused under strict field validation, as the real CRDs refuse it.
"""

from __future__ import annotations

GROUP = "monitoring.coreos.com"

_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_DURATION = {"type": "string",
             "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_LABEL_SELECTOR = {"type": "object", "properties": {
    "matchLabels": {"type": "object", "additionalProperties": _STRING},
    "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"], "properties": {
        "key": _STRING, "operator": _STRING, "values": _STRINGS}}}}}
_NAMESPACE_SELECTOR = {"type": "object", "properties": {"any": {"type": "boolean"}, "matchNames": _STRINGS}}
_RELABEL = {"type": "object", "properties": {
    "sourceLabels": _STRINGS, "separator": _STRING, "targetLabel": _STRING, "regex": _STRING,
    "modulus": {"type": "integer"}, "replacement": _STRING,
    "action": {"type": "string", "enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                                          "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep"]}}}
_ENDPOINT_COMMON = {
    "path": _STRING, "scheme": {"type": "string", "enum": ["http", "https", "HTTP", "HTTPS"]},
    "interval": _DURATION, "scrapeTimeout": _DURATION, "honorLabels": {"type": "boolean"},
    "relabelings": {"type": "array", "items": _RELABEL}, "metricRelabelings": {"type": "array", "items": _RELABEL},
}


def _crd(kind: str, plural: str, spec_properties: dict, required: list[str]) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"voxfleet.dev/test-fixture": "prometheus-operator"}},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "required": ["spec"], "properties": {
                    "apiVersion": _STRING, "kind": _STRING, "metadata": {"type": "object"},
                    "spec": {"type": "object", "required": required, "properties": spec_properties}}}}}],
        },
    }


def service_monitor_crd() -> dict:
    endpoint = {"type": "object", "properties": {
        "port": _STRING, "targetPort": {"x-kubernetes-int-or-string": True}, **_ENDPOINT_COMMON}}
    return _crd("ServiceMonitor", "servicemonitors", {
        "jobLabel": _STRING, "targetLabels": _STRINGS, "podTargetLabels": _STRINGS,
        "endpoints": {"type": "array", "items": endpoint},
        "selector": _LABEL_SELECTOR, "namespaceSelector": _NAMESPACE_SELECTOR,
    }, ["selector"])


def pod_monitor_crd() -> dict:
    endpoint = {"type": "object", "properties": {
        "port": _STRING, "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535}, **_ENDPOINT_COMMON}}
    return _crd("PodMonitor", "podmonitors", {
        "jobLabel": _STRING, "podTargetLabels": _STRINGS,
        "podMetricsEndpoints": {"type": "array", "items": endpoint},
        "selector": _LABEL_SELECTOR, "namespaceSelector": _NAMESPACE_SELECTOR,
    }, ["selector"])


def prometheus_rule_crd() -> dict:
    string_map = {"type": "object", "additionalProperties": _STRING}
    rule = {"type": "object", "required": ["expr"], "properties": {
        "record": _STRING, "alert": _STRING, "expr": {"x-kubernetes-int-or-string": True},
        "for": _DURATION, "keep_firing_for": _DURATION, "labels": string_map, "annotations": string_map}}
    group = {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1}, "interval": _DURATION, "query_offset": _DURATION,
        "limit": {"type": "integer"}, "partial_response_strategy": _STRING, "labels": string_map,
        "rules": {"type": "array", "items": rule}}}
    return _crd("PrometheusRule", "prometheusrules", {"groups": {"type": "array", "items": group}}, [])


def all_crds() -> list[dict]:
    return [service_monitor_crd(), pod_monitor_crd(), prometheus_rule_crd()]


CRD_NAMES = [f"crd/{plural}.{GROUP}" for plural in ("servicemonitors", "podmonitors", "prometheusrules")]


def install(kube) -> None:
    """ServiceMonitor/PodMonitor/PrometheusRule served by the world's apiserver (server-side apply: idempotent across xdist
    workers; never deleted, as other tests may be using them)."""
    import yaml

    manifests = "\n---\n".join(yaml.safe_dump(crd) for crd in all_crds())
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=voxfleet-chart-tests", "-f", "-",
                 input=manifests)
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *CRD_NAMES)
