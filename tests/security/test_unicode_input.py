"""Characters beyond the Basic Multilingual Plane (an emoji) in what a tenant writes, found by the stateful
fuzzing: a spec keeps getting a clear answer, never a 5xx, and when the operator quotes the tenant's text in a
condition (an invalid pattern), it can still write that condition. Both the gateway and the operator send
server-side apply bodies as YAML, where JSON's ASCII escapes of such characters (surrogate pairs) are invalid.
"""

from __future__ import annotations

import pytest
import yaml

from tests.security.hostile_platform import offline_spec
from tests.world.waiting import wait_for

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

EMOJI = "\U0001F600"


@pytest.fixture(scope="module")
def tenant(platform):
    return platform.add_tenant("uni", groups=["uni-devs"])


@pytest.mark.parametrize("text", [EMOJI, "caf\u00e9 \u4f60\u597d", "\U000e46df", "\ue000"],
                         ids=["emoji", "bmp", "plane-14", "private-use"])
def test_a_greeting_in_any_script_is_stored_as_written(platform, tenant, text):
    greeting = f"Hello {text}!"
    with platform.api(tenant) as http:
        response = http.put("/v1/agents/unicode", json=offline_spec(greeting=greeting))
        assert response.status_code in (200, 201), response.text
        assert http.get("/v1/agents/unicode").json()["spec"]["greeting"] == greeting  # nothing lost


def test_the_operator_names_an_invalid_pattern_quoting_an_emoji(platform, tenant):
    manifest = {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "VoiceAgent",
                "metadata": {"name": "emoji-pattern", "namespace": tenant.namespace},
                "spec": offline_spec(intents=[{"name": "smile", "patterns": [f"{EMOJI}("], "reply": "ok"}])}
    applied = platform.kubectl_as("uni-devs", "apply", "-f", "-", input=yaml.safe_dump(manifest, allow_unicode=True))
    assert applied.returncode == 0, applied.stderr
    degraded = wait_for("the invalid pattern reported", lambda: (c := platform.degraded(
        tenant.namespace, "emoji-pattern")).get("status") == "True" and c, timeout=45, interval=0.5)
    print(f"Degraded {degraded.get('reason')}: {degraded.get('message')}")
    assert "intents" in degraded["message"] and "patterns" in degraded["message"], degraded
