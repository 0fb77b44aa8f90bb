"""The ValidatingAdmissionPolicy that refuses deleting a Tenant which still has VoiceAgents.

The apiserver evaluates it (CEL, no webhook to run) against the Tenant's `status.agents`, which the operator keeps
current, so `kubectl delete tenant` fails at once with a message that says what to do. The operator's finalizer
on Tenants is the backstop for the short window in which that count lags behind.
"""

from __future__ import annotations

from typing import Any

from voxfleet.api.tenant import PLURAL
from voxfleet.api.voiceagent import GROUP, VERSION
from voxfleet.operator.ownership import MANAGED

POLICY = "voxfleet-tenant-deletion"

_HAS_AGENTS = "has(oldObject.status) && has(oldObject.status.agents) && oldObject.status.agents > 0"
_MESSAGE = ("'Tenant ' + oldObject.metadata.name + ' still has ' + string(oldObject.status.agents)"
            " + ' VoiceAgent(s) in namespace ' + (has(oldObject.status.namespace) ? oldObject.status.namespace : '?')"
            " + ': delete them first (deleting a Tenant never cuts live calls or removes agents by surprise)'")


def build_tenant_deletion_policy() -> list[dict[str, Any]]:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY, "labels": dict(MANAGED)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [GROUP], "apiVersions": [VERSION],
                                                    "operations": ["DELETE"], "resources": [PLURAL]}]},
            "validations": [{"expression": f"!({_HAS_AGENTS})", "messageExpression": _MESSAGE,
                             "reason": "Forbidden"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY, "labels": dict(MANAGED)},
        "spec": {"policyName": POLICY, "validationActions": ["Deny"]},
    }
    return [policy, binding]
