"""CRDs generated from the pydantic models, so the apiserver and our code refuse the same specs.

Pydantic's JSON Schema is close to, but not, a Kubernetes structural schema: `$ref`s must be inlined,
`anyOf [X, null]` collapsed to X, titles and `additionalProperties: false` dropped (the apiserver prunes
unknown fields instead, and rejects them under strict field validation), and free-form objects marked
`x-kubernetes-preserve-unknown-fields`. Nested objects get their children's defaults as their own default, so the apiserver
fills them in exactly as pydantic would (and CEL rules on them see complete objects).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from voxfleet.api import tenant, voiceagent
from voxfleet.api.voiceagent import GROUP, VERSION

_DROP = {"title", "$defs"}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema rewritten as a Kubernetes structural schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    return _convert(raw, definitions)


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    node = copy.deepcopy(node)
    if "$ref" in node:
        target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}  # the referencing field's description wins
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types structurally: {branches}")
        node = {**_convert(branches[0], definitions), **node}
    if node.get("default", "absent") is None:
        del node["default"]
    elif isinstance(node.get("default"), dict):
        node["default"] = _without_nulls(node["default"])
    for key in _DROP:
        node.pop(key, None)

    if node.get("type") == "object":
        extra = node.pop("additionalProperties", None)
        if "properties" in node:
            raw_properties = node["properties"]
            node["properties"] = {name: _convert(child, definitions) for name, child in raw_properties.items()}
            required = set(node.get("required", []))
            for name, child in node["properties"].items():
                optional_none = raw_properties[name].get("default", "absent") is None
                if (name not in required and not optional_none and "default" not in child
                        and "properties" in child and not child.get("required")):
                    # what the apiserver's defaulting would produce, so CEL rules see a complete default
                    child["default"] = {key: grand["default"] for key, grand in child["properties"].items()
                                        if "default" in grand}
        elif isinstance(extra, dict):
            node["additionalProperties"] = _convert(extra, definitions)
        else:
            node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node["type"] = "object"
        node.pop("properties", None)
    if node.get("type") == "array" and "items" in node:
        node["items"] = _convert(node["items"], definitions)
    if node.get("format") == "date-time" and "default" in node:
        del node["default"]
    return _ordered(node)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    return value


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """type and description first, so the YAML reads like `kubectl explain`."""
    head = [key for key in ("type", "description") if key in node]
    return {key: node[key] for key in head + sorted(k for k in node if k not in head)}


def _column(name: str, json_path: str, kind: str = "string", description: str = "",
            priority: int = 0) -> dict[str, Any]:
    column = {"name": name, "type": kind, "jsonPath": json_path, "description": description}
    if priority:
        column["priority"] = priority
    return column


def _crd(kind: str, plural: str, scope: str, short_names: list[str], description: str,
         spec_model: type[BaseModel], status_model: type[BaseModel],
         columns: list[dict[str, Any]], root_rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec = structural_schema(spec_model)
    spec["description"] = description
    status = structural_schema(status_model)
    status["description"] = f"The observed state of the {kind}, written by the voxfleet operator."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "voxfleet", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": short_names, "categories": ["voxfleet"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": description,
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string", "description": "APIVersion of this object."},
                        "kind": {"type": "string", "description": "Kind of this object."},
                        # name typed here so a root CEL rule may point its fieldPath at .metadata.name
                        "metadata": ({"type": "object", "properties": {"name": {
                            "type": "string", "description": "The object's name; see the rules on the resource."}}}
                                     if root_rules else {"type": "object"}),
                        "spec": spec,
                        "status": status,
                    },
                    **({"x-kubernetes-validations": root_rules} if root_rules else {}),
                }},
            }],
        },
    }


def voiceagent_crd() -> dict[str, Any]:
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return _crd(
        voiceagent.KIND, voiceagent.PLURAL, "Namespaced", ["va"],
        "A tenant's real-time voice agent: its speech pipeline, tools and intents, and the regions whose warm"
        " worker pools serve its calls.",
        voiceagent.VoiceAgentSpec, voiceagent.VoiceAgentStatus,
        [
            _column("Regions", ".status.regionNames", description="Regions with a warm pool."),
            _column("Ready", ready, description="All regions have their desired workers ready."),
            _column("Workers", ".status.readyWorkers", "integer", "Ready workers over all regions."),
            _column("Sessions", ".status.activeSessions", "integer", "Calls in progress."),
            _column("Free", ".status.freeSlots", "integer", "Free session slots.", priority=1),
            _column("Age", ".metadata.creationTimestamp", "date"),
        ],
    )


def tenant_crd() -> dict[str, Any]:
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return _crd(
        tenant.KIND, tenant.PLURAL, "Cluster", ["vt"],
        "A customer of the platform: its namespace, the groups that manage its agents, allowed regions and quotas.",
        tenant.TenantSpec, tenant.TenantStatus,
        [
            _column("Namespace", ".status.namespace", description="The tenant's namespace."),
            _column("Agents", ".status.agents", "integer", "VoiceAgents in the namespace."),
            _column("Ready", ready, description="Namespace, quota, policies and RBAC are in place."),
            _column("Age", ".metadata.creationTimestamp", "date"),
        ],
        root_rules=[tenant.NAME_RULE],
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, as checked into crds/."""
    return {"voxfleet.dev_voiceagents.yaml": voiceagent_crd(), "voxfleet.dev_tenants.yaml": tenant_crd()}


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two places (a nested default reused by its parent's default) out in full at
    each: YAML anchors and aliases (&id001 / *id001) read badly in a CRD, and some tools (kustomize patches,
    Helm's own templating, linters) mishandle them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(crd: dict[str, Any]) -> str:
    header = "# Generated from voxfleet.api by `voxfleet crds`; do not edit by hand.\n"
    return header + yaml.dump(crd, Dumper=_PlainDumper, sort_keys=False, width=120)


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in all_crds().items():
        path = directory / name
        path.write_text(render(crd))
        written.append(path)
    return written
