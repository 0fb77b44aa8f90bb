"""On the real kube-apiserver: the CRDs install, every example applies, invalid resources are refused with a
message naming the field, and `kubectl explain` teaches the schema."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.api.invalid_resources import (INVALID_AGENTS, INVALID_TENANTS, OLD_FLOAT_FORMS, VALID_AGENT_SPEC,
                                         VALID_TENANT_SPEC)
from voxfleet.api.crd import all_crds

pytestmark = pytest.mark.world

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "voxfleet.dev", "v1alpha1"


@pytest.fixture(scope="module")
def api(kube, installed_crds):
    with kube.api_client() as api_client:
        yield client.CustomObjectsApi(api_client)


def _kubectl(kube, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return kube.kubectl(*args, check=False, input=stdin)


def _refusal(call) -> str:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    return json.loads(caught.value.body)["message"]


def test_examples_apply(kube, api, namespace):
    """Every example resource is accepted (Tenants cluster-wide, agents in a fresh namespace, strict fields)."""
    applied = 0
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] not in ("VoiceAgent", "Tenant"):
                continue
            doc = copy.deepcopy(doc)
            if doc["kind"] == "Tenant":
                doc["metadata"]["name"] = f"{namespace}-{doc['metadata']['name']}"[:63]
                doc["spec"].pop("namespace", None)
                created = api.create_cluster_custom_object(GROUP, VERSION, "tenants", doc, field_validation="Strict")
                api.delete_cluster_custom_object(GROUP, VERSION, "tenants", created["metadata"]["name"])
            else:
                doc["metadata"]["namespace"] = namespace
                created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", doc,
                                                              field_validation="Strict")
                # the apiserver filled in the defaults the models define
                assert created["spec"]["limits"]["maxSessionSeconds"] >= 10
                assert "scaling" in created["spec"] and "turnDetection" in created["spec"]
            applied += 1
    assert applied >= 6


@pytest.mark.parametrize(("case", "spec", "needles"), INVALID_AGENTS, ids=[c[0] for c in INVALID_AGENTS])
def test_invalid_voiceagents_are_refused(api, namespace, case, spec, needles):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent", "metadata": {"name": f"bad-{case}"[:63]},
            "spec": spec}
    message = _refusal(lambda: api.create_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", body,
                                                                   field_validation="Strict"))
    for needle in needles:
        assert needle in message, f"{case}: {needle!r} not in {message!r}"


@pytest.mark.parametrize(("case", "spec", "needles"), INVALID_TENANTS, ids=[c[0] for c in INVALID_TENANTS])
def test_invalid_tenants_are_refused(api, namespace, case, spec, needles):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": f"{namespace}-{case}"[:63]},
            "spec": spec}
    message = _refusal(lambda: api.create_cluster_custom_object(GROUP, VERSION, "tenants", body,
                                                                field_validation="Strict"))
    for needle in needles:
        assert needle in message, f"{case}: {needle!r} not in {message!r}"


def test_a_tenant_name_with_a_dot_is_refused_by_kubectl_apply_naming_the_field(kube, api, namespace):
    """Room names are <tenant>.<agent>.<rest>: "acme.eu" would read as tenant "acme", agent "eu"."""
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": "acme.eu"},
                "spec": VALID_TENANT_SPEC}
    result = _kubectl(kube, "apply", "-f", "-", stdin=json.dumps(manifest))
    print(f"kubectl apply of Tenant acme.eu: exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode != 0
    assert "metadata.name" in result.stderr and "DNS label" in result.stderr and "no dots" in result.stderr
    assert api.list_cluster_custom_object(GROUP, VERSION, "tenants", field_selector="metadata.name=acme.eu")[
        "items"] == []
    # A DNS label is fine, up to 63 characters.
    good = dict(manifest, metadata={"name": f"{namespace}-acme-eu"[:63]})
    assert _kubectl(kube, "apply", "-f", "-", stdin=json.dumps(good)).returncode == 0
    api.delete_cluster_custom_object(GROUP, VERSION, "tenants", good["metadata"]["name"])


def test_valid_baseline_is_accepted(api, namespace):
    """The invalid cases differ from this valid spec only in what they break."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent", "metadata": {"name": "good"},
            "spec": VALID_AGENT_SPEC}
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", body, field_validation="Strict")
    tenant = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": f"{namespace}-good"[:63]},
              "spec": VALID_TENANT_SPEC}
    api.create_cluster_custom_object(GROUP, VERSION, "tenants", tenant, field_validation="Strict")
    api.delete_cluster_custom_object(GROUP, VERSION, "tenants", tenant["metadata"]["name"])


def test_kubectl_refuses_unknown_fields_and_immutable_tenant_namespace(kube, api, namespace):
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent",
                "metadata": {"name": "typo", "namespace": namespace},
                "spec": {**VALID_AGENT_SPEC, "greting": "typo'd key"}}
    result = _kubectl(kube, "apply", "-f", "-", stdin=json.dumps(manifest))
    assert result.returncode != 0
    assert 'unknown field "spec.greting"' in result.stderr

    name = f"{namespace}-imm"[:63]
    tenant = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": name},
              "spec": {**VALID_TENANT_SPEC, "namespace": f"{namespace}-a"[:63]}}
    api.create_cluster_custom_object(GROUP, VERSION, "tenants", tenant)
    try:
        message = _refusal(lambda: api.patch_cluster_custom_object(
            GROUP, VERSION, "tenants", name, {"spec": {"namespace": f"{namespace}-b"[:63]}}))
        assert "spec.namespace" in message and "cannot be changed" in message
    finally:
        api.delete_cluster_custom_object(GROUP, VERSION, "tenants", name)


def test_kubectl_explain_and_printer_columns(kube, api, namespace):
    explained = _kubectl(kube, "explain", "voiceagent.spec.tools")
    assert explained.returncode == 0, explained.stderr
    assert "A function the LLM may call" in explained.stdout and "interruptible" in explained.stdout
    explained = _kubectl(kube, "explain", "tenant.spec.quotas.maxConcurrentSessions")
    assert "Calls in progress at once" in explained.stdout
    explained = _kubectl(kube, "explain", "voiceagent.spec.turnDetection.vad")
    assert "Milliseconds of silence" in explained.stdout and "stopMs\t<integer>" in explained.stdout, explained.stdout
    explained = _kubectl(kube, "explain", "voiceagent.status.conditions")
    assert "lastTransitionTime\t<string> -required-" in explained.stdout, explained.stdout

    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent", "metadata": {"name": "columns"},
            "spec": VALID_AGENT_SPEC}
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", body)
    listed = _kubectl(kube, "get", "va", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert header == ["NAME", "REGIONS", "READY", "WORKERS", "SESSIONS", "AGE"]
    assert _kubectl(kube, "get", "voxfleet", "-n", namespace).returncode == 0  # the category works


def test_installed_crds_are_the_generated_ones(kube, installed_crds):
    with kube.api_client() as api_client:
        ext = client.ApiextensionsV1Api(api_client)
        for crd in all_crds().values():
            live = ext.read_custom_resource_definition(crd["metadata"]["name"])
            conditions = {c.type: c.status for c in live.status.conditions}
            assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"


@pytest.mark.parametrize(("case", "turn_detection", "field"), OLD_FLOAT_FORMS, ids=[c[0] for c in OLD_FLOAT_FORMS])
def test_old_float_and_secs_forms_are_refused_naming_the_field(kube, api, namespace, case, turn_detection, field):
    """The float/`...Secs` fields are gone from the schema: strict field validation (kubectl's default) refuses a
    spec still using them, naming the field, rather than pruning it and running the agent on defaults."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent", "metadata": {"name": f"old-{case}".lower()},
            "spec": {**VALID_AGENT_SPEC, "turnDetection": turn_detection}}
    with pytest.raises(ApiException) as caught:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", body, field_validation="Strict")
    message = json.loads(caught.value.body)["message"]
    print(f"{case}: HTTP {caught.value.status}: {message}")
    assert f'unknown field "{field}"' in message
    result = _kubectl(kube, "apply", "-n", namespace, "-f", "-", stdin=json.dumps(body))
    print(f"kubectl apply: exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode != 0 and f'unknown field "{field}"' in result.stderr


def _condition(**changes) -> dict:
    return {"type": "Ready", "status": "True", "reason": "PoolsReady", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1, **changes}


# (case, conditions, text the apiserver's message must contain)
INVALID_CONDITIONS = [
    ("no-reason", [{k: v for k, v in _condition().items() if k != "reason"}],
     ["status.conditions[0].reason", "Required value"]),
    ("no-transition-time", [{k: v for k, v in _condition().items() if k != "lastTransitionTime"}],
     ["status.conditions[0].lastTransitionTime", "Required value"]),
    ("no-message", [{k: v for k, v in _condition().items() if k != "message"}],
     ["status.conditions[0].message", "Required value"]),
    ("empty-reason", [_condition(reason="")], ["status.conditions[0].reason", "should be at least 1 chars long"]),
    ("reason-not-a-word", [_condition(reason="pools are ready")], ["status.conditions[0].reason", "should match"]),
    ("bad-status", [_condition(status="Yes")], ["status.conditions[0].status", "Unsupported value"]),
    ("type-twice", [_condition(), _condition(status="False", reason="WorkersNotReady")],
     ["status.conditions[1]", "Duplicate value"]),
    ("negative-generation", [_condition(observedGeneration=-1)],
     ["status.conditions[0].observedGeneration", "greater than or equal to 0"]),
]


def test_conditions_have_the_standard_shape(api, namespace):
    """metav1.Condition's rules, enforced by the apiserver on the status subresource of both kinds: what the
    operator writes is accepted, a condition missing a required field, with a reason that is not a CamelCase
    word, or repeating a type (a list map keyed by type) is refused naming the field."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent", "metadata": {"name": "conditions"},
            "spec": VALID_AGENT_SPEC}
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", body)
    good = [_condition(), _condition(type="Degraded", status="False", reason="AsExpected")]
    patched = api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "voiceagents", "conditions",
                                                        {"status": {"conditions": good}})
    assert [c["type"] for c in patched["status"]["conditions"]] == ["Ready", "Degraded"]
    for case, conditions, needles in INVALID_CONDITIONS:
        message = _refusal(lambda: api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "voiceagents", "conditions", {"status": {"conditions": conditions}}))
        print(f"{case}: {message}")
        for needle in needles:
            assert needle in message, f"{case}: {needle!r} not in {message!r}"

    name = f"{namespace}-conditions"[:63]
    tenant = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": name},
              "spec": VALID_TENANT_SPEC}
    api.create_cluster_custom_object(GROUP, VERSION, "tenants", tenant)
    try:
        api.patch_cluster_custom_object_status(GROUP, VERSION, "tenants", name, {"status": {"conditions": good}})
        message = _refusal(lambda: api.patch_cluster_custom_object_status(
            GROUP, VERSION, "tenants", name, {"status": {"conditions": [_condition(), _condition()]}}))
        assert "status.conditions[1]" in message and "Duplicate value" in message, message
    finally:
        api.delete_cluster_custom_object(GROUP, VERSION, "tenants", name)
