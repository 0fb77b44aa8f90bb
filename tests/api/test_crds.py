"""crds/ is generated from the models: structural, documented, and never stale."""

from __future__ import annotations

import re
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


def _spec_fields():
    for kind, root in _schemas():
        for path, node in _walk(root["properties"]["spec"], f"{kind}.spec"):
            yield path, node


DURATION_WORDS = re.compile(r"(Timeout|Delay|Wait|Duration|Interval|Period|Deadline|Grace|After|Start|Stop)"
                            r"|(Secs?|Seconds|Ms|Millis|Milliseconds|Minutes|Hours)$")
# Amounts counted in a billing unit, not durations of anything the platform waits for (docs/api-conventions.md).
BILLED_AMOUNTS = {"monthlyMinutes"}


def test_no_float_fields_in_any_spec() -> None:
    """API conventions: floats never in a spec (they do not round-trip across languages); thresholds are
    integer percent, quantities are resource.Quantity strings (docs/api-conventions.md)."""
    floats = [path for path, node in _spec_fields() if node.get("type") == "number"]
    print(f"spec fields of type number: {floats}")
    assert not floats


def test_every_duration_is_an_integer_named_by_its_unit() -> None:
    """The one rule of docs/api-conventions.md: a duration is an integer whose name ends in its unit, `Seconds`
    or `Ms` (never Secs, Millis, a float or a Go duration string)."""
    durations, wrong = [], []
    for path, node in _spec_fields():
        name = path.rsplit(".", 1)[-1]
        if (not DURATION_WORDS.search(name) or node.get("type") in ("object", "array", "boolean")
                or name in BILLED_AMOUNTS):
            continue
        durations.append(name)
        if node.get("type") != "integer" or not re.search(r"[a-z](Seconds|Ms)$", name):
            wrong.append(f"{path} ({node.get('type')})")
    print(f"durations in the specs: {sorted(set(durations))}")
    assert len(durations) >= 8  # the rule is applied to fields that exist, not to none
    assert not wrong, f"durations not integer ...Seconds/...Ms: {wrong}"


def test_status_conditions_are_standard() -> None:
    """metav1.Condition's shape on both kinds: the six fields, five required, a list map keyed by type."""
    for kind, root in _schemas():
        conditions = root["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map", kind
        assert conditions["x-kubernetes-list-map-keys"] == ["type"], kind
        item = conditions["items"]
        assert set(item["properties"]) == {"type", "status", "observedGeneration", "lastTransitionTime", "reason",
                                           "message"}, kind
        assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}, kind
        assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
        assert item["properties"]["reason"]["pattern"] == "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_generated_crds_have_no_yaml_anchors() -> None:
    """A default shared by two places is written out at both (no &id001 / *id001): the files on disk and in the
    chart are read by people, kustomize and Helm."""
    chart = CRDS.parent / "charts" / "voxfleet"
    paths = [*CRDS.glob("*.yaml"), *chart.glob("crds/*.yaml"), *chart.glob("files/crds/*.yaml")]
    assert len(paths) >= 4  # ours and the chart's copy
    for path in paths:
        events = list(yaml.parse(path.read_text()))
        aliases = [e for e in events if isinstance(e, yaml.AliasEvent)]
        anchored = [e.anchor for e in events if getattr(e, "anchor", None)]
        print(f"{path.relative_to(CRDS.parent)}: {len(events)} YAML events, {len(aliases)} aliases, "
              f"{len(anchored)} anchors")
        assert not aliases and not anchored, path
