"""Invalid VoiceAgents and Tenants the apiserver must refuse, each with the field its message must name.

Shared by the apiserver test (the CRD schema and CEL rules) so every case is checked where users hit it.
"""

from __future__ import annotations

import copy
from typing import Any

VALID_AGENT_SPEC: dict[str, Any] = {
    "greeting": "Hello!",
    "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"}, "tts": {"provider": "espeak"}},
    "tools": [{"name": "lookup_order", "http": {"url": "https://orders.example.com/lookup"}}],
    "intents": [{"name": "order", "keywords": ["order"], "toolCall": {"name": "lookup_order"}, "reply": "{result}"}],
    "regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 3}],
}

VALID_TENANT_SPEC: dict[str, Any] = {"allowedRegions": ["us-east"], "groups": ["acme:admins"]}


def _agent(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_AGENT_SPEC)
    spec.update(changes)
    return spec


def _pipeline(**stages: Any) -> dict[str, Any]:
    pipeline = copy.deepcopy(VALID_AGENT_SPEC["pipeline"])
    pipeline.update(stages)
    return _agent(pipeline=pipeline)


# (case id, spec, text the apiserver's message must contain: the field path and/or the reason)
INVALID_AGENTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("bad-enum", _pipeline(tts={"provider": "espeak-ultra"}), ["spec.pipeline.tts.provider", "Unsupported value"]),
    ("negative-min-workers", _agent(regions=[{"name": "us-east", "minWorkers": -1, "maxWorkers": 3}]),
     ["spec.regions[0].minWorkers", "greater than or equal to 0"]),
    ("min-above-max", _agent(regions=[{"name": "us-east", "minWorkers": 5, "maxWorkers": 2}]),
     ["spec.regions[0].minWorkers", "minWorkers must not exceed maxWorkers"]),
    ("duplicate-region", _agent(regions=[{"name": "us-east"}, {"name": "us-east"}]),
     ["spec.regions[1]", "Duplicate value"]),
    ("no-regions", _agent(regions=[]), ["spec.regions", "should have at least 1 items"]),
    ("cloud-provider-without-secret", _pipeline(llm={"provider": "anthropic"}),
     ["spec.pipeline.llm", "secretRef is required for cloud providers"]),
    ("oversize-prompt", _agent(systemPrompt="x" * 16385), ["spec.systemPrompt", "Too long"]),
    ("bad-tool-url", _agent(tools=[{"name": "lookup_order", "http": {"url": "file:///etc/passwd"}}]),
     ["spec.tools[0].http.url", "should match"]),
    ("intent-names-unknown-tool", _agent(intents=[{"name": "x", "keywords": ["a"], "toolCall": {"name": "refund"}}]),
     ["spec.intents", "must name a tool declared in spec.tools"]),
    ("intent-without-match", _agent(intents=[{"name": "x", "reply": "hi"}]),
     ["spec.intents[0]", "give at least one keyword or pattern"]),
    ("reserved-env", _agent(worker={"env": [{"name": "VOXFLEET_WORKER_TOKEN", "value": "stolen"}]}),
     ["spec.worker.env[0].name", "reserved for the platform"]),
    ("reserved-otel-env", _agent(worker={"env": [{"name": "OTEL_RESOURCE_ATTRIBUTES",
                                                   "value": "voxfleet.tenant=someone-else"}]}),
     ["spec.worker.env[0].name", "reserved for the platform"]),
    ("tool-timeout-too-long", _agent(tools=[{"name": "lookup_order", "http": {
        "url": "https://orders.example.com/lookup", "timeoutMs": 600000}}]),
     ["spec.tools[0].http.timeoutMs", "less than or equal to 30000"]),
    ("bad-tool-name", _agent(tools=[{"name": "lookup order!", "http": {"url": "https://orders.example.com/x"}}],
                             intents=[]), ["spec.tools[0].name", "should match"]),
    ("vad-confidence-above-100", _agent(turnDetection={"vad": {"confidencePercent": 150}}),
     ["spec.turnDetection.vad.confidencePercent", "less than or equal to 100"]),
    # durations and thresholds are integers (docs/api-conventions.md): a float is refused naming the field
    ("fractional-start-ms", _agent(turnDetection={"vad": {"startMs": 32.5}}),
     ["spec.turnDetection.vad.startMs", "must be of type integer"]),
    ("fractional-volume-percent", _agent(turnDetection={"vad": {"minVolumePercent": 0.3}}),
     ["spec.turnDetection.vad.minVolumePercent", "must be of type integer"]),
    ("fractional-speech-timeout-ms", _agent(turnDetection={"timeouts": {"speechTimeoutMs": 0.6}}),
     ["spec.turnDetection.timeouts.speechTimeoutMs", "must be of type integer"]),
    ("bad-detector", _agent(turnDetection={"detector": "guess"}), ["spec.turnDetection.detector", "Unsupported value"]),
    ("header-with-value-and-secret", _agent(tools=[{"name": "lookup_order", "http": {
        "url": "https://orders.example.com/lookup",
        "headers": [{"name": "Authorization", "value": "x", "secretKeyRef": {"name": "s", "key": "k"}}]}}]),
     ["spec.tools[0].http.headers[0]", "exactly one of value and secretKeyRef"]),
    ("sessions-per-worker-zero", _agent(scaling={"sessionsPerWorker": 0}),
     ["spec.scaling.sessionsPerWorker", "greater than or equal to 1"]),
    ("bad-memory-quantity", _agent(worker={"resources": {"limits": {"memory": "lots"}}}),
     ["spec.worker.resources.limits.memory", "should match"]),
    # issue 24: a recovery kept looking for minutes, an unknown spare policy, a recycle limit below any worker
    ("recovery-deadline-too-long", _agent(recovery={"deadlineMs": 120001}),
     ["spec.recovery.deadlineMs", "less than or equal to 120000"]),
    ("recovery-deadline-too-short", _agent(recovery={"deadlineMs": 999}),
     ["spec.recovery.deadlineMs", "greater than or equal to 1000"]),
    ("unknown-spare-capacity", _agent(scaling={"spareCapacity": "EveryWorkerTwice"}),
     ["spec.scaling.spareCapacity", "Unsupported value"]),
    ("memory-recycle-too-low", _agent(limits={"memoryRecycleMb": 1}),
     ["spec.limits.memoryRecycleMb", "greater than or equal to 128"]),
]

# The float and `...Secs` forms of early v1alpha1 (api.voiceagent.RENAMED_FIELDS): under strict field validation
# (kubectl's default) the apiserver refuses them as unknown fields, naming each; the models name the replacement.
OLD_FLOAT_FORMS: list[tuple[str, dict[str, Any], str]] = [
    ("vad-confidence", {"vad": {"confidence": 0.7}}, "spec.turnDetection.vad.confidence"),
    ("vad-startSecs", {"vad": {"startSecs": 0.2}}, "spec.turnDetection.vad.startSecs"),
    ("vad-stopSecs", {"vad": {"stopSecs": 0.2}}, "spec.turnDetection.vad.stopSecs"),
    ("vad-minVolume", {"vad": {"minVolume": 0.6}}, "spec.turnDetection.vad.minVolume"),
    ("speechTimeoutSecs", {"timeouts": {"speechTimeoutSecs": 0.6}}, "spec.turnDetection.timeouts.speechTimeoutSecs"),
    ("maxTurnWaitSecs", {"timeouts": {"maxTurnWaitSecs": 3.0}}, "spec.turnDetection.timeouts.maxTurnWaitSecs"),
]

INVALID_TENANTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no-regions", {"allowedRegions": []}, ["spec.allowedRegions", "should have at least 1 items"]),
    ("negative-quota", {**VALID_TENANT_SPEC, "quotas": {"maxConcurrentSessions": -5}},
     ["spec.quotas.maxConcurrentSessions", "greater than or equal to 0"]),
    ("bad-namespace", {**VALID_TENANT_SPEC, "namespace": "Not_A_Namespace"}, ["spec.namespace", "should match"]),
    ("duplicate-region", {"allowedRegions": ["us-east", "us-east"]}, ["spec.allowedRegions[1]", "Duplicate value"]),
    ("bad-cpu-quota", {**VALID_TENANT_SPEC, "quotas": {"cpu": "lots"}}, ["spec.quotas.cpu", "should match"]),
]
