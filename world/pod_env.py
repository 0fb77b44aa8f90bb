"""A container's environment, resolved as a kubelet does: envFrom, then env (later entries win), with
``$(VAR)`` references expanded against what is defined so far, and the downward API's field references.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from voxfleet.kube.errors import NotFound

_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(RuntimeError):
    """A referenced ConfigMap/Secret/key is missing (kubelet's CreateContainerConfigError): retried later."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubelet's ``$(VAR)`` syntax: defined names are replaced, ``$$`` is a literal ``$``, anything else is kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2:close]
                    if name in env:
                        out.append(env[name])
                    else:
                        out.append(text[i:close + 1])
                    i = close + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def field_value(pod: dict, path: str) -> str:
    """The downward API's fieldRef paths (status.podIP, metadata.labels['x'], spec.nodeName, ...)."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs") or []),
        "status.hostIPs": ",".join(p["ip"] for p in status.get("hostIPs") or []),
    }
    if path in simple:
        return simple[path] or ""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


# What a container sees for resourceFieldRef when it has no limit: the node's allocatable (world nodes: 64 CPUs,
# 256 GiB), as a kubelet does.
NODE_ALLOCATABLE = {"cpu": 64.0, "memory": 256 * 2**30, "ephemeral-storage": 2**40}
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}


def quantity(text: str) -> float:
    for suffix, factor in _SUFFIXES.items():
        if str(text).endswith(suffix):
            return float(str(text)[: -len(suffix)]) * factor
    return float(text)


def resource_value(container: dict, ref: dict) -> str:
    resource = ref["resource"]  # e.g. limits.cpu, requests.memory
    kind, name = resource.split(".", 1)
    declared = ((container.get("resources") or {}).get(kind) or {}).get(name)
    value = quantity(declared) if declared is not None else NODE_ALLOCATABLE.get(name, 0)
    divisor = quantity(ref.get("divisor") or "1") or 1.0  # the apiserver defaults an unset divisor to "0"
    return str(math.ceil(value / divisor))


class EnvResolver:
    """Resolves a container's env; ``read_config_map``/``read_secret`` return the object's data as dicts of str
    (secrets already decoded) and raise voxfleet.kube.errors.NotFound when missing."""

    def __init__(self, read_config_map: Callable[[str, str], dict[str, str]],
                 read_secret: Callable[[str, str], dict[str, str]]):
        self.read_config_map = read_config_map
        self.read_secret = read_secret

    def _source(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, str] | None:
        reader = self.read_config_map if kind == "ConfigMap" else self.read_secret
        try:
            return reader(namespace, name)
        except NotFound:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found') from None

    def resolve(self, pod: dict, container: dict, base: Mapping[str, str]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env = dict(base)
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref, kind = source["configMapRef"], "ConfigMap"
            else:
                ref, kind = source["secretRef"], "Secret"
            data = self._source(kind, namespace, ref["name"], bool(ref.get("optional")))
            for key, value in (data or {}).items():
                if _VAR_NAME.match(prefix + key):  # kubelet skips keys that aren't valid variable names
                    env[prefix + key] = value
        for var in container.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                env[name] = resource_value(container, source["resourceFieldRef"])
            else:
                kind, ref = (("ConfigMap", source["configMapKeyRef"]) if "configMapKeyRef" in source
                             else ("Secret", source["secretKeyRef"]))
                optional = bool(ref.get("optional"))
                data = self._source(kind, namespace, ref["name"], optional)
                if data is None or ref["key"] not in data:
                    if optional:
                        continue
                    raise ConfigError(f'couldn\'t find key {ref["key"]} in {kind} {namespace}/{ref["name"]}')
                env[name] = data[ref["key"]]
        return env
