"""crds/ is generated from the models: structural, documented, and never stale."""

from __future__ import annotations

from pathlib import Path

import yaml

from voxfleet.api.crd import all_crds, render

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_checked_in_crds_match_the_models() -> None:
    for name, crd in all_crds().items():
        assert (CRDS / name).read_text() == render(crd), f"crds/{name} is stale: run `voxfleet crds`"
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(all_crds())


def _walk(node: dict, path: str):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schemas():
    for crd in all_crds().values():
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        yield crd["spec"]["names"]["kind"], root


def test_every_field_is_documented_and_typed() -> None:
    undocumented, untyped = [], []
    for kind, root in _schemas():
        for path, node in _walk(root, kind):
            if path.endswith("[]") or path.endswith("{}") or path.endswith(".metadata"):
                continue
            if not node.get("description"):
                undocumented.append(path)
            if "type" not in node:
                untyped.append(path)
    assert not undocumented, f"fields without a description (kubectl explain shows nothing): {undocumented}"
    assert not untyped, f"fields without a type (not structural): {untyped}"


def test_structural_schema_rules() -> None:
    forbidden = {"$ref", "anyOf", "allOf", "oneOf", "title", "$defs", "const"}
    for kind, root in _schemas():
        for path, node in _walk(root, kind):
            assert not forbidden & node.keys(), f"{path} uses {forbidden & node.keys()}"
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") in (None,), f"{path}: properties with additionalProperties"


def test_conventions() -> None:
    crds = {crd["spec"]["names"]["kind"]: crd for crd in all_crds().values()}
    agent = crds["VoiceAgent"]["spec"]
    assert agent["names"]["shortNames"] == ["va"] and agent["scope"] == "Namespaced"
    assert crds["Tenant"]["spec"]["scope"] == "Cluster"
    for crd in crds.values():
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert {c["name"] for c in version["additionalPrinterColumns"]} >= {"Ready", "Age"}
    regions = agent["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["regions"]
    assert regions["x-kubernetes-list-type"] == "map" and regions["x-kubernetes-list-map-keys"] == ["name"]
    # the YAML on disk parses to the same object
    for path in CRDS.glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["kind"] == "CustomResourceDefinition"
