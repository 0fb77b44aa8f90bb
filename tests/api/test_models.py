"""The contract models refuse what the CRD refuses, with messages that name the problem."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tests.api.invalid_resources import OLD_FLOAT_FORMS
from voxfleet.api.tenant import Tenant, TenantStatus
from voxfleet.api.voiceagent import VoiceAgent, VoiceAgentSpec, VoiceAgentStatus
from voxfleet.api.common import SecretKeyRef
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.voiceagent import RENAMED_FIELDS
from voxfleet.api.worker_config import WorkerConfig, read_secret, secret_env_name

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_documents() -> list[dict]:
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


MINIMAL = {"regions": [{"name": "us-east"}]}


def test_every_example_parses() -> None:
    kinds = {"VoiceAgent": VoiceAgent, "Tenant": Tenant}
    parsed = [kinds[doc["kind"]].model_validate(doc) for doc in example_documents() if doc["kind"] in kinds]
    assert {type(p).__name__ for p in parsed} == {"VoiceAgent", "Tenant"}
    assert len(parsed) >= 6


def test_defaults_are_offline_and_safe() -> None:
    spec = VoiceAgentSpec.model_validate(MINIMAL)
    assert (spec.pipeline.stt.provider, spec.pipeline.llm.provider, spec.pipeline.tts.provider) == (
        "pocketsphinx", "scripted", "espeak")
    assert spec.observability.record_transcripts is False
    assert spec.scaling.sessions_per_worker == 4
    assert spec.worker.resources.requests.cpu == "500m"


def test_camel_case_round_trip() -> None:
    spec = VoiceAgentSpec.model_validate({**MINIMAL, "systemPrompt": "be brief"})
    wire = spec.to_wire()
    assert wire["systemPrompt"] == "be brief"
    assert VoiceAgentSpec.model_validate(wire) == spec


@pytest.mark.parametrize(("patch", "needle"), [
    ({"regions": [{"name": "us-east", "minWorkers": 5, "maxWorkers": 2}]}, "minWorkers (5) must not exceed"),
    ({"regions": [{"name": "us-east"}, {"name": "us-east"}]}, "region names must be unique"),
    ({"regions": []}, "at least 1 item"),
    ({"pipeline": {"llm": {"provider": "anthropic"}}}, "secretRef is required"),
    ({"pipeline": {"tts": {"provider": "espeak-ultra"}}}, "Input should be"),
    # Read at a worker's warm start: refused here, never a worker that cannot start; the echo is cut short.
    ({"pipeline": {"stt": {"options": {"rejection": "phone-loop" + "x" * 5000}}}},
     "options.rejection must be one of off, phone-loop, got 'phone-loopxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'"),
    ({"intents": [{"name": "x", "keywords": ["hi"], "toolCall": {"name": "nope"}}]}, "does not declare"),
    ({"intents": [{"name": "x", "patterns": ["(unclosed"], "reply": "hi"}]}, "not valid RE2"),
    ({"intents": [{"name": "x", "patterns": ["(a)\\1"], "reply": "hi"}]}, "not valid RE2"),
    ({"intents": [{"name": "x", "reply": "hi"}]}, "at least one keyword or pattern"),
    ({"worker": {"env": [{"name": "VOXFLEET_WORKER_TOKEN", "value": "x"}]}}, "reserved for the platform"),
    ({"worker": {"env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://x"}]}}, "reserved for the platform"),
    ({"systemPrompt": "x" * 20000}, "at most 16384"),
    ({"tools": [{"name": "t", "http": {"url": "ftp://example.com/x"}}]}, "should match pattern"),
    ({"tools": [{"name": "t", "parameters": {"type": "array"}, "http": {"url": "https://example.com/x"}}]},
     '"type": "object"'),
    ({"tools": [{"name": "t", "http": {"url": "https://example.com/x"}},
                {"name": "t", "http": {"url": "https://example.com/y"}}]}, "tool names must be unique"),
    ({"scaling": {"sessionsPerWorker": 0}}, "greater than or equal to 1"),
    ({"unknownField": 1}, "Extra inputs are not permitted"),
])
def test_invalid_specs_are_refused_with_a_reason(patch: dict, needle: str) -> None:
    spec = {**copy.deepcopy(MINIMAL), **patch}
    with pytest.raises(ValidationError) as caught:
        VoiceAgentSpec.model_validate(spec)
    assert needle in str(caught.value)


def test_tenant_namespace_default_and_uniqueness() -> None:
    tenant = Tenant.model_validate({"metadata": {"name": "acme"}, "spec": {"allowedRegions": ["us-east"]}})
    assert tenant.spec.namespace_for("acme") == "tenant-acme"
    with pytest.raises(ValidationError, match="allowedRegions must not repeat"):
        Tenant.model_validate({"spec": {"allowedRegions": ["us-east", "us-east"]}})


def test_worker_config_hash_follows_the_spec_and_secrets_stay_out() -> None:
    spec = VoiceAgentSpec.model_validate({**MINIMAL, "pipeline": {
        "llm": {"provider": "openai", "secretRef": {"name": "keys", "key": "openai"}}}})
    config = WorkerConfig(tenant="acme", agent="support", namespace="tenant-acme", spec=spec)
    edited = config.model_copy(update={"spec": spec.model_copy(update={"greeting": "hi"})})
    assert config.config_hash() != edited.config_hash()
    assert config.config_hash() == WorkerConfig.model_validate_json(config.render()).config_hash()
    assert [ (r.name, r.key) for r in config.secret_refs()] == [("keys", "openai")]


def test_secret_env_names_are_stable_and_missing_secrets_name_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretKeyRef(name="keys", key="openai")
    assert secret_env_name(ref) == secret_env_name(SecretKeyRef(name="keys", key="openai"))
    assert secret_env_name(ref) != secret_env_name(SecretKeyRef(name="keys", key="deepgram"))
    with pytest.raises(RuntimeError, match="Secret 'keys' key 'openai'"):
        read_secret(ref)
    monkeypatch.setenv(secret_env_name(ref), "sk-test")
    assert read_secret(ref) == "sk-test"


def test_platform_settings_image_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXFLEET_ALLOWED_WORKER_IMAGES", '["registry.example.com/voice/*"]')
    settings = PlatformSettings()
    assert settings.image_allowed(settings.worker_image)
    assert settings.image_allowed("registry.example.com/voice/custom:1.2")
    assert not settings.image_allowed("evil.example.com/miner:latest")
    with pytest.raises(RuntimeError, match="no worker token"):
        settings.load_worker_token()


@pytest.mark.parametrize(("case", "turn_detection", "field"), OLD_FLOAT_FORMS, ids=[c[0] for c in OLD_FLOAT_FORMS])
def test_old_float_and_secs_forms_are_refused_naming_their_replacement(case, turn_detection, field) -> None:
    """What the gateway answers a client still sending the early v1alpha1 form: the field and what replaced it."""
    with pytest.raises(ValidationError) as caught:
        VoiceAgentSpec.model_validate({**MINIMAL, "turnDetection": turn_detection})
    error = caught.value.errors()[0]
    old = field.rsplit(".", 1)[-1]
    print(f"{case}: {'.'.join(map(str, error['loc']))}: {error['msg']}")
    assert ".".join(map(str, error["loc"])) == field.removeprefix("spec.").rsplit(".", 1)[0]
    assert old in error["msg"] and RENAMED_FIELDS[old].split(" ")[0] in error["msg"]


def test_durations_and_thresholds_are_integers() -> None:
    spec = VoiceAgentSpec.model_validate({**MINIMAL, "turnDetection": {
        "vad": {"startMs": 32, "stopMs": 200, "confidencePercent": 60, "minVolumePercent": 30},
        "timeouts": {"speechTimeoutMs": 300, "maxTurnWaitMs": 3000}}})
    assert (spec.turn_detection.vad.start_ms, spec.turn_detection.vad.min_volume_percent) == (32, 30)
    assert spec.to_wire()["turnDetection"]["timeouts"] == {"speechTimeoutMs": 300, "maxTurnWaitMs": 3000}
    with pytest.raises(ValidationError, match="fractional part"):
        VoiceAgentSpec.model_validate({**MINIMAL, "turnDetection": {"vad": {"stopMs": 0.2}}})
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        VoiceAgentSpec.model_validate({**MINIMAL, "turnDetection": {"vad": {"confidencePercent": 700}}})


READY = {"type": "Ready", "status": "True", "reason": "PoolsReady", "message": "",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(("conditions", "needle"), [
    ([READY, {**READY, "status": "False"}], "type 'Ready' appears twice"),
    ([{k: v for k, v in READY.items() if k != "lastTransitionTime"}], "lastTransitionTime"),
    ([{k: v for k, v in READY.items() if k != "reason"}], "reason"),
    ([{**READY, "reason": "pools ready"}], "should match pattern"),
    ([{**READY, "status": "Yes"}], "'True', 'False' or 'Unknown'"),
])
def test_status_conditions_follow_the_standard_shape(conditions: list, needle: str) -> None:
    for status_model in (VoiceAgentStatus, TenantStatus):
        with pytest.raises(ValidationError) as caught:
            status_model.model_validate({"conditions": conditions})
        assert needle in str(caught.value), str(caught.value)
    assert VoiceAgentStatus.model_validate({"conditions": [READY]}).conditions[0].reason == "PoolsReady"
