"""The pure parts of tenant secrets and gateway trust: names and sizes a tenant may write, the spec paths of Secret
references, error details that never carry input, namespace ownership precedence and per-tenant call shares."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.gateway.api_errors import validation_details
from voxfleet.api.spec_secrets import secret_references
from voxfleet.gateway.secret_references import reference_problems
from voxfleet.gateway.settings import GatewaySettings
from voxfleet.gateway.tenant_directory import _precedence, _refused_by_operator
from voxfleet.gateway.tenant_secrets import MAX_TOTAL_BYTES, SecretWrite, name_problem, size_problem
from voxfleet.gateway.worker_call_shares import ShareExhausted, TenantCallShares

MARKER = "sk-live-MARKER-0f3a9c"


@pytest.mark.parametrize("name", ["openai", "provider-keys", "a.b-c", "x" * 253])
def test_names_a_tenant_may_use(name):
    assert name_problem(name, {"voxfleet-worker-token"}) is None


@pytest.mark.parametrize("name, why", [
    ("voxfleet-worker-token", "platform's"), ("voxfleet-anything", "platform's"), ("worker-token", "platform's"),
    ("Upper", "DNS-1123"), ("-lead", "DNS-1123"), ("trail.", "DNS-1123"), ("a..b", "DNS-1123"),
    ("x" * 254, "DNS-1123"), ("has space", "DNS-1123")])
def test_names_a_tenant_may_not_use(name, why):
    assert why in name_problem(name, {"worker-token"})


def test_a_secret_is_bounded_in_keys_and_bytes():
    assert size_problem({"k": "v" * (MAX_TOTAL_BYTES - 1)}) is None
    assert "65537 bytes" in size_problem({"k": "v" * MAX_TOTAL_BYTES})
    with pytest.raises(ValidationError):
        SecretWrite.model_validate({"data": {f"k{i}": "v" for i in range(65)}})
    with pytest.raises(ValidationError):
        SecretWrite.model_validate({"data": {}})


def test_validation_details_carry_no_input_not_even_a_refused_key():
    bodies = [{"data": {f"bad key {MARKER}": "v"}}, {"data": {"k": 5}, "extra": MARKER}, {"data": [MARKER]},
              {"dta": {"k": MARKER}}, {"data": {"k": {"nested": MARKER}}}]
    for body in bodies:
        with pytest.raises(ValidationError) as caught:
            SecretWrite.model_validate(body)
        details = validation_details(list(caught.value.errors()))
        assert details and MARKER not in repr(details), (body, details)
    with pytest.raises(ValidationError) as caught:
        SecretWrite.model_validate({"data": {"bad key": "v"}})
    assert validation_details(list(caught.value.errors())) == [
        {"field": "data", "message": "a key name is not valid: String should match pattern '^[-._a-zA-Z0-9]+$'",
         "reason": "string_pattern_mismatch", "pointer": "/data"}]


def _spec_with_references() -> VoiceAgentSpec:
    return VoiceAgentSpec.model_validate({
        "regions": [{"name": "us-east"}],
        "pipeline": {"llm": {"provider": "openai", "model": "gpt-4o-mini",
                             "secretRef": {"name": "openai", "key": "api-key"}}},
        "tools": [{"name": "lookup", "description": "Look it up.",
                   "http": {"url": "https://tools.example.com/x",
                            "headers": [{"name": "X-Plain", "value": "1"},
                                        {"name": "Authorization",
                                         "secretKeyRef": {"name": "voxfleet-worker-token", "key": "token"}}]}}]})


def test_references_are_named_by_the_field_path_the_api_uses():
    paths = [(path, ref.name, ref.key) for path, ref in secret_references(_spec_with_references())]
    assert paths == [("pipeline.llm.secretRef", "openai", "api-key"),
                     ("tools[0].http.headers[1].secretKeyRef", "voxfleet-worker-token", "token")]


def test_only_the_tenants_secrets_with_the_key_pass():
    references = secret_references(_spec_with_references())
    problems = reference_problems(references, {"openai": {"other"}})
    assert [(p["field"], p["reason"]) for p in problems] == [
        ("pipeline.llm.secretRef.key", "SecretKeyNotFound"),
        ("tools[0].http.headers[1].secretKeyRef.name", "SecretNotFound")]
    assert "PUT /v1/secrets/voxfleet-worker-token" in problems[1]["message"]
    assert reference_problems(references, {"openai": {"api-key"}, "voxfleet-worker-token": {"token"}}) == []


def _tenant(name: str, created: str, status_namespace: str | None = None, taken: bool = False) -> dict:
    status = {"namespace": status_namespace} if status_namespace else {}
    if taken:
        status["conditions"] = [{"type": "Ready", "status": "False", "reason": "NamespaceTaken"}]
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def test_namespace_precedence_confirmed_then_oldest_then_name():
    old = _tenant("zeta", "2026-01-01T00:00:00Z")
    young_confirmed = _tenant("beta", "2026-06-01T00:00:00Z", status_namespace="shared")
    same_age = _tenant("alpha", "2026-01-01T00:00:00Z")
    ordered = sorted([old, young_confirmed, same_age], key=lambda t: _precedence(t, "shared"))
    assert [t["metadata"]["name"] for t in ordered] == ["beta", "alpha", "zeta"]
    assert _refused_by_operator(_tenant("late", "2026-07-01T00:00:00Z", "shared", taken=True))
    assert not _refused_by_operator(young_confirmed)


def test_fair_share_settings_must_leave_room_for_other_tenants():
    with pytest.raises(ValidationError, match="worker_calls_per_tenant"):
        GatewaySettings(worker_max_connections=64, worker_calls_per_tenant=64)
    with pytest.raises(ValidationError, match="operational_port"):
        GatewaySettings(port=9000, operational_port=9000)


async def test_a_tenant_at_its_share_waits_alone_while_another_goes_at_once():
    shares = TenantCallShares(per_tenant=2)
    release = asyncio.Event()

    async def hung_call() -> None:
        async with shares.held("tenant-slow", wait_seconds=5):
            await release.wait()

    hung = [asyncio.create_task(hung_call()) for _ in range(2)]
    await asyncio.sleep(0)
    assert shares.in_flight("tenant-slow") == 2
    started = time.perf_counter()
    async with shares.held("tenant-fast", wait_seconds=5):
        waited_ms = (time.perf_counter() - started) * 1000
    print(f"other tenant's wait for its share while one tenant holds all of its own: {waited_ms:.3f} ms")
    assert waited_ms < 50
    with pytest.raises(ShareExhausted):
        async with shares.held("tenant-slow", wait_seconds=0.05):
            pass
    release.set()
    await asyncio.gather(*hung)
    assert shares.in_flight("tenant-slow") == 0
