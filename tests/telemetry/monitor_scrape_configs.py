"""The Prometheus scrape configs the Prometheus Operator would generate from the chart's ServiceMonitors and
PodMonitors, so tests scrape the platform "the way the chart's monitors would" with a plain Prometheus.

Follows the operator's generator (prometheus-operator pkg/prometheus/promcfg.go, read not copied): one job per
monitor endpoint named ``podMonitor|serviceMonitor/<namespace>/<name>/<index>``; the monitor's label selector as
``keep`` relabelings on ``__meta_kubernetes_*_label_<name>`` and ``..._labelpresent_<name>``; the endpoint's named
port as a ``keep``; ``namespace``, ``pod``, ``container`` (and ``service``) target labels; ``job`` = ``<ns>/<name>``
for a PodMonitor, the Service's name (or its ``jobLabel`` label) for a ServiceMonitor; ``endpoint`` = the port;
then the endpoint's own ``relabelings`` and ``metricRelabelings``; ``honor_labels: false`` unless asked, so a
scraped process cannot overwrite those target labels (its clashing labels become ``exported_<name>``).
Left out on purpose: sharding (``hashmod`` over one shard keeps everything) and authentication/TLS fields, which
raise ``Untranslatable`` rather than being silently dropped.

ServiceMonitors, two forms (``service_discovery=``):
- ``"endpoints"``: the operator's own form (role ``endpoints``), for a real cluster and ``promtool check config``.
- ``"pods"`` (default): the test world's apiserver refuses loopback addresses in Endpoints/EndpointSlices (see
  world/README.md), so Services never list pods there. This form resolves what Endpoints would have listed:
  the pods the Service's ``spec.selector`` picks, on the container port its ``targetPort`` names, with the same
  target labels. It needs the Services, found among ``objects`` (the chart renders them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

MONITOR_KINDS = ("PodMonitor", "ServiceMonitor")
# Endpoint fields we translate; anything else in an endpoint is a field this module would silently ignore.
_ENDPOINT_FIELDS = {"port", "targetPort", "portNumber", "path", "scheme", "interval", "scrapeTimeout", "params",
                    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "filterRunning"}


class Untranslatable(ValueError):
    """A monitor uses a field this translation does not implement (so its scrape would not match the operator's)."""


def scrape_configs_for_monitors(objects: Iterable[dict], *, kubeconfig: str | Path, interval: str | None = None,
                                service_discovery: Literal["pods", "endpoints"] = "pods") -> list[dict]:
    """Scrape configs for every PodMonitor and ServiceMonitor among ``objects`` (e.g. a rendered chart).

    ``interval`` overrides every endpoint's interval (tests want 1 s, not the chart's 15-30 s).
    """
    objects = [o for o in objects if o]
    services = [o for o in objects if o.get("kind") == "Service"]
    configs: list[dict] = []
    for monitor in objects:
        if monitor.get("kind") == "PodMonitor":
            configs += pod_monitor_scrape_configs(monitor, kubeconfig=kubeconfig, interval=interval)
        elif monitor.get("kind") == "ServiceMonitor":
            configs += service_monitor_scrape_configs(monitor, services, kubeconfig=kubeconfig, interval=interval,
                                                      service_discovery=service_discovery)
    return configs


def pod_monitor_scrape_configs(monitor: dict, *, kubeconfig: str | Path, interval: str | None = None) -> list[dict]:
    meta, spec = monitor["metadata"], monitor["spec"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    configs = []
    for index, endpoint in enumerate(spec.get("podMetricsEndpoints", [])):
        _check_fields(monitor, endpoint)
        relabel = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
        if endpoint.get("filterRunning", True):
            relabel.append(_drop_finished_pods())
        relabel += _selector_relabelings(spec.get("selector", {}), "pod")
        relabel += _port_relabelings(endpoint)
        relabel += _pod_target_labels()
        relabel += _copied_labels(spec.get("podTargetLabels", []), "pod")
        relabel += [{"target_label": "job", "replacement": f"{namespace}/{name}"}]
        if endpoint.get("port"):
            relabel.append({"target_label": "endpoint", "replacement": endpoint["port"]})
        relabel += [_relabel(r) for r in endpoint.get("relabelings", [])]
        sd = _kubernetes_sd("pod", kubeconfig, _namespaces(spec.get("namespaceSelector"), namespace))
        configs.append(_job(f"podMonitor/{namespace}/{name}/{index}", endpoint, sd, relabel, interval))
    return configs


def service_monitor_scrape_configs(monitor: dict, services: Sequence[dict], *, kubeconfig: str | Path,
                                   interval: str | None = None,
                                   service_discovery: Literal["pods", "endpoints"] = "pods") -> list[dict]:
    meta, spec = monitor["metadata"], monitor["spec"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    namespaces = _namespaces(spec.get("namespaceSelector"), namespace)
    configs = []
    for index, endpoint in enumerate(spec.get("endpoints", [])):
        _check_fields(monitor, endpoint)
        job_name = f"serviceMonitor/{namespace}/{name}/{index}"
        if service_discovery == "endpoints":
            configs.append(_endpoints_job(job_name, spec, endpoint, namespaces, kubeconfig, interval))
            continue
        matching = [s for s in services if _service_selected(s, spec.get("selector", {}), namespaces)]
        for service in matching:
            suffix = f"/{service['metadata']['name']}" if len(matching) > 1 else ""
            job = _service_pods_job(job_name + suffix, spec, endpoint, service, kubeconfig, interval)
            if job is not None:
                configs.append(job)
    return configs


# --- the ServiceMonitor forms -----------------------------------------------------------------------------


def _endpoints_job(job_name: str, spec: dict, endpoint: dict, namespaces: list[str] | None,
                   kubeconfig: str | Path, interval: str | None) -> dict:
    relabel = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    relabel += _selector_relabelings(spec.get("selector", {}), "service")
    if endpoint.get("port"):
        relabel.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                        "regex": re.escape(endpoint["port"])})
    elif endpoint.get("targetPort") is not None:
        relabel += _port_relabelings({"targetPort": endpoint["targetPort"]})
    for kind, label in (("Node", "node"), ("Pod", "pod")):
        relabel.append({"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                                          "__meta_kubernetes_endpoint_address_target_name"],
                        "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}", "target_label": label})
    relabel += [{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                _drop_finished_pods()]
    relabel += _copied_labels(spec.get("targetLabels", []), "service")
    relabel += _copied_labels(spec.get("podTargetLabels", []), "pod")
    relabel.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job",
                    "replacement": "${1}"})
    if spec.get("jobLabel"):
        relabel.append({"source_labels": [f"__meta_kubernetes_service_label_{_sanitize(spec['jobLabel'])}"],
                        "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
    if endpoint.get("port"):
        relabel.append({"target_label": "endpoint", "replacement": endpoint["port"]})
    relabel += [_relabel(r) for r in endpoint.get("relabelings", [])]
    return _job(job_name, endpoint, _kubernetes_sd("endpoints", kubeconfig, namespaces), relabel, interval)


def _service_pods_job(job_name: str, spec: dict, endpoint: dict, service: dict, kubeconfig: str | Path,
                      interval: str | None) -> dict | None:
    """What the operator's endpoints job scrapes, found through the pods the Service selects."""
    svc_meta, svc_spec = service["metadata"], service.get("spec", {})
    port = _service_port(service, endpoint)
    if port is None or not svc_spec.get("selector"):
        return None  # no such port on this Service, or a selector-less Service: Endpoints would list nothing
    target_port = port.get("targetPort", port["port"])
    svc_labels = svc_meta.get("labels", {})
    relabel = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}, _drop_finished_pods()]
    relabel += _selector_relabelings({"matchLabels": svc_spec["selector"]}, "pod")
    relabel += _port_relabelings({"targetPort": target_port})
    relabel += _pod_target_labels()
    relabel.append({"target_label": "service", "replacement": svc_meta["name"]})
    for label in spec.get("targetLabels", []):
        if label in svc_labels:
            relabel.append({"target_label": _sanitize(label), "replacement": svc_labels[label]})
    relabel += _copied_labels(spec.get("podTargetLabels", []), "pod")
    job = svc_labels.get(spec["jobLabel"]) if spec.get("jobLabel") else None
    relabel.append({"target_label": "job", "replacement": job or svc_meta["name"]})
    if endpoint.get("port"):
        relabel.append({"target_label": "endpoint", "replacement": endpoint["port"]})
    relabel += [_relabel(r) for r in endpoint.get("relabelings", [])]
    sd = _kubernetes_sd("pod", kubeconfig, [svc_meta.get("namespace", "default")])
    return _job(job_name, endpoint, sd, relabel, interval)


def _service_port(service: dict, endpoint: dict) -> dict | None:
    for port in service.get("spec", {}).get("ports", []):
        if endpoint.get("port") and port.get("name") == endpoint["port"]:
            return port
        if endpoint.get("targetPort") is not None and port.get("targetPort", port["port"]) == endpoint["targetPort"]:
            return port
    return None


def _service_selected(service: dict, selector: dict, namespaces: list[str] | None) -> bool:
    meta = service["metadata"]
    if namespaces is not None and meta.get("namespace", "default") not in namespaces:
        return False
    return label_selector_matches(selector, meta.get("labels", {}))


def label_selector_matches(selector: dict, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels AND every matchExpression)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --- pieces shared by both kinds ---------------------------------------------------------------------------


def _job(job_name: str, endpoint: dict, sd: dict, relabel: list[dict], interval: str | None) -> dict:
    job: dict = {"job_name": job_name, "honor_labels": bool(endpoint.get("honorLabels", False)),
                 "kubernetes_sd_configs": [sd]}
    if "honorTimestamps" in endpoint:
        job["honor_timestamps"] = bool(endpoint["honorTimestamps"])
    scrape_interval = interval or endpoint.get("interval")
    if scrape_interval:
        job["scrape_interval"] = scrape_interval
    timeout = interval or endpoint.get("scrapeTimeout")
    if timeout:
        job["scrape_timeout"] = timeout
    if endpoint.get("path"):
        job["metrics_path"] = endpoint["path"]
    if endpoint.get("scheme"):
        job["scheme"] = endpoint["scheme"]
    if endpoint.get("params"):
        job["params"] = endpoint["params"]
    job["relabel_configs"] = relabel
    if endpoint.get("metricRelabelings"):
        job["metric_relabel_configs"] = [_relabel(r) for r in endpoint["metricRelabelings"]]
    return job


def _kubernetes_sd(role: str, kubeconfig: str | Path, namespaces: list[str] | None) -> dict:
    sd: dict = {"role": role, "kubeconfig_file": str(kubeconfig)}
    if namespaces is not None:
        sd["namespaces"] = {"names": namespaces}
    return sd


def _namespaces(selector: dict | None, own: str) -> list[str] | None:
    """None = every namespace (``any: true``); no selector = the monitor's own namespace (operator default)."""
    selector = selector or {}
    if selector.get("any"):
        return None
    return list(selector.get("matchNames") or [own])


def _selector_relabelings(selector: dict, role: str) -> list[dict]:
    meta = f"__meta_kubernetes_{role}"
    rules = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        rules.append({"action": "keep", "source_labels": [f"{meta}_label_{_sanitize(key)}",
                                                          f"{meta}_labelpresent_{_sanitize(key)}"],
                      "regex": f"({re.escape(value)});true"})
    for expr in selector.get("matchExpressions") or []:
        label, present = f"{meta}_label_{_sanitize(expr['key'])}", f"{meta}_labelpresent_{_sanitize(expr['key'])}"
        values = "|".join(re.escape(v) for v in expr.get("values") or [])
        op = expr["operator"]
        if op == "In":
            rules.append({"action": "keep", "source_labels": [label, present], "regex": f"({values});true"})
        elif op == "NotIn":
            rules.append({"action": "drop", "source_labels": [label, present], "regex": f"({values});true"})
        elif op == "Exists":
            rules.append({"action": "keep", "source_labels": [present], "regex": "true"})
        elif op == "DoesNotExist":
            rules.append({"action": "drop", "source_labels": [present], "regex": "true"})
        else:
            raise Untranslatable(f"label selector operator {op!r}")
    return rules


def _port_relabelings(endpoint: dict) -> list[dict]:
    if endpoint.get("port"):
        return [{"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                 "regex": re.escape(endpoint["port"])}]
    port = endpoint.get("portNumber", endpoint.get("targetPort"))
    if isinstance(port, int):
        return [{"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                 "regex": str(port)}]
    if isinstance(port, str):
        return [{"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                 "regex": re.escape(port)}]
    return []


def _pod_target_labels() -> list[dict]:
    return [{"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}]


def _copied_labels(names: Sequence[str], role: str) -> list[dict]:
    return [{"source_labels": [f"__meta_kubernetes_{role}_label_{_sanitize(n)}"], "target_label": _sanitize(n),
             "regex": "(.+)", "replacement": "${1}"} for n in names]


def _drop_finished_pods() -> dict:
    return {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}


_RELABEL_KEYS = {"sourceLabels": "source_labels", "separator": "separator", "targetLabel": "target_label",
                 "regex": "regex", "modulus": "modulus", "replacement": "replacement", "action": "action"}


def _relabel(crd: dict) -> dict:
    """A RelabelConfig from the CRD (camelCase, any-case action) -> Prometheus's relabel_config."""
    unknown = set(crd) - set(_RELABEL_KEYS)
    if unknown:
        raise Untranslatable(f"relabeling fields {sorted(unknown)}")
    result = {_RELABEL_KEYS[k]: v for k, v in crd.items()}
    if "action" in result:
        result["action"] = result["action"].lower()
    return result


def _check_fields(monitor: dict, endpoint: dict) -> None:
    unknown = set(endpoint) - _ENDPOINT_FIELDS
    if unknown:
        raise Untranslatable(f"{monitor['kind']} {monitor['metadata']['name']}: endpoint fields {sorted(unknown)} "
                             f"are not translated here (authentication/TLS and the like)")


def _sanitize(label: str) -> str:
    """Kubernetes label name -> the form Prometheus gives it in meta labels (app.kubernetes.io/name ->
    app_kubernetes_io_name)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)
