"""The VoiceAgent resource: one tenant's voice agent, its pipeline, tools, regions and scaling.

Everything in a VoiceAgent spec is tenant input. The rules here are enforced twice: by pydantic (gateway and
operator parse specs with these models) and by the apiserver through the CRD generated from them (schema
limits plus the CEL rules attached below), so `kubectl apply` and the REST gateway refuse the same things.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from voxfleet.api import tool_schema
from voxfleet.api.common import Condition, SecretKeyRef, check_condition_types_unique, condition_list
from voxfleet.api.model_base import ApiModel, cel, name_field, validations
from voxfleet.api.tenant_regex import PATTERN_MAX_MEM, SPEC_PROGRAM_BUDGET, ProgramBudget
from voxfleet.api.tool_schema import (MAX_TOOL_SCHEMA_BYTES, MAX_TOOL_SCHEMA_DEPTH, MAX_TOOL_SCHEMA_NODES,
                                      check_meta, check_self_contained, schema_patterns)

GROUP = "voxfleet.dev"
VERSION = "v1alpha1"
KIND = "VoiceAgent"
PLURAL = "voiceagents"

STT_PROVIDERS = ("pocketsphinx", "deepgram", "openai")
LLM_PROVIDERS = ("scripted", "openai", "anthropic")
TTS_PROVIDERS = ("espeak", "cartesia", "elevenlabs", "openai")
# Providers that run inside the worker and need no credentials.
OFFLINE_PROVIDERS = ("pocketsphinx", "scripted", "espeak")

HTTP_URL = r"^https?://[^\s/?#]+([/?#][^\s]*)?$"
TOOL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_ENV_PREFIXES = ("VOXFLEET_", "OTEL_")
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
MAX_TOOL_ARGUMENT_BYTES = 4096
# The whole spec as compact JSON, defaults left out. Each list and string has its own limit, but all of them at once would make
# ~1.7 MB (more than etcd stores); this bounds what one spec costs to parse and check, and fits the gateway's
# request body limit (256 KiB) with room for a client's whitespace.
MAX_SPEC_BYTES = 192 * 1024
# Pass as model_validate(..., context=STORED_SPEC_FOR_ROUTING) to leave out the costly checks (RE2 budgets, tool
# schema meta-validation) when a spec only routes sessions and someone else admits it: the gateway's agent
# directory, which must not compile a tenant's patterns on its event loop. Admission never passes it.
STORED_SPEC_FOR_ROUTING = {"costly_checks": False}
_BUDGET_NOTE = (f" Compiled as RE2 with at most {PATTERN_MAX_MEM // 1024} KiB of memory per pattern; every pattern"
                f" of the spec together (intents and tool schemas) may compile to at most {SPEC_PROGRAM_BUDGET}"
                " RE2 instructions (\\pL alone is about 1,200, [a-z] about 10).")

_SECRET_FOR_CLOUD = cel(
    "self.provider in ['pocketsphinx', 'scripted', 'espeak'] || has(self.secretRef)"
    " || (self.provider == 'openai' && has(self.baseUrl))",
    "secretRef is required for cloud providers (an OpenAI-compatible baseUrl may go without one)",
    reason="FieldValueRequired",
)


def _stage(providers: tuple[str, ...], default: str, what: str) -> Any:
    """A pipeline stage model (stt, llm or tts) over its own provider enum."""

    class Stage(ApiModel):
        model_config = {"json_schema_extra": validations(_SECRET_FOR_CLOUD)}

        provider: Literal[providers] = Field(  # type: ignore[valid-type]
            default=default, description=f"Which {what} provider runs this stage. Offline ones need no keys.")
        model: str | None = Field(default=None, max_length=128,
                                  description=f"Provider model name for {what} (provider default when empty).")
        voice: str | None = Field(default=None, max_length=128, description="Voice name or id (TTS only).")
        language: str = Field(default="en-US", max_length=16, pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$",
                              description="BCP-47 language tag.")
        base_url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL,
                                     description="Override the provider's endpoint (e.g. a vLLM or Ollama server)."
                                                 " Subject to the platform's outbound URL policy.")
        options: dict[str, str] = Field(default_factory=dict, max_length=32,
                                        description="Provider-specific options as strings (e.g. temperature).")
        secret_ref: SecretKeyRef | None = Field(default=None,
                                                description="Secret key holding the provider's API key.")

        @model_validator(mode="after")
        def _cloud_needs_secret(self) -> "Stage":
            if self.provider not in OFFLINE_PROVIDERS and self.secret_ref is None and not (
                    self.provider == "openai" and self.base_url):
                raise ValueError(f"secretRef is required for the cloud provider {self.provider!r}")
            return self

        @model_validator(mode="after")
        def _known_rejection(self) -> "Stage":
            # Read at the worker's warm start: an unknown value must be refused here, never crash a worker.
            rejection = self.options.get("rejection") if what == "stt" else None
            if rejection is not None and rejection not in STT_REJECTIONS:
                raise ValueError(f"options.rejection must be one of {', '.join(STT_REJECTIONS)}, got {rejection[:40]!r}")
            return self

    Stage.__name__ = Stage.__qualname__ = f"{what.upper()}Stage"
    return Stage


# pocketsphinx: "phone-loop" turns speech the grammar can only force its words onto into the noMatch path.
STT_REJECTIONS = ("off", "phone-loop")
SttStage = _stage(STT_PROVIDERS, "pocketsphinx", "stt")
LlmStage = _stage(LLM_PROVIDERS, "scripted", "llm")
TtsStage = _stage(TTS_PROVIDERS, "espeak", "tts")


class Pipeline(ApiModel):
    """The speech pipeline: speech-to-text, language model, text-to-speech."""

    stt: SttStage = Field(default_factory=SttStage, description="Speech-to-text stage.")  # type: ignore[valid-type]
    llm: LlmStage = Field(default_factory=LlmStage, description="Language model stage.")  # type: ignore[valid-type]
    tts: TtsStage = Field(default_factory=TtsStage, description="Text-to-speech stage.")  # type: ignore[valid-type]


# Float and `...Secs` fields of early v1alpha1 specs, and what replaced them (docs/api-conventions.md). Refused, not
# converted: an alpha API changes in place, and a spec silently rescaled is worse than one sent back with the fix.
RENAMED_FIELDS = {
    "confidence": "confidencePercent (integer percent: 0.7 is 70)",
    "startSecs": "startMs (integer milliseconds: 0.2 is 200)",
    "stopSecs": "stopMs (integer milliseconds: 0.2 is 200)",
    "minVolume": "minVolumePercent (integer percent: 0.6 is 60)",
    "speechTimeoutSecs": "speechTimeoutMs (integer milliseconds: 0.6 is 600)",
    "maxTurnWaitSecs": "maxTurnWaitMs (integer milliseconds: 3.0 is 3000)",
}


def _refuse_renamed(data: Any) -> Any:
    if isinstance(data, dict):
        for old in data:
            if old in RENAMED_FIELDS:
                raise ValueError(f"{old} was replaced by {RENAMED_FIELDS[old]}")
    return data


class Vad(ApiModel):
    """Silero voice activity detection thresholds. Durations are integer milliseconds and thresholds integer
    percent (docs/api-conventions.md: no floats in a spec)."""

    confidence_percent: int = Field(default=70, ge=0, le=100,
                                    description="Speech probability, in percent, that counts as voice.")
    start_ms: int = Field(default=200, ge=0, le=2000,
                          description="Milliseconds of voice before speech is considered started.")
    stop_ms: int = Field(default=200, ge=0, le=3000,
                         description="Milliseconds of silence before speech is considered stopped.")
    min_volume_percent: int = Field(default=60, ge=0, le=100,
                                    description="Minimum volume, in percent of full scale (normalised), that counts"
                                                " as voice.")

    _renamed = model_validator(mode="before")(_refuse_renamed)


class TurnTimeouts(ApiModel):
    """How long the agent waits before it decides the caller has finished (integer milliseconds)."""

    speech_timeout_ms: int = Field(default=600, ge=0, le=5000,
                                   description="speech-timeout detector: milliseconds of silence after speech that"
                                               " end the turn.")
    max_turn_wait_ms: int = Field(default=3000, ge=0, le=10000,
                                  description="smart-turn detector: the longest wait, in milliseconds, on a turn it"
                                              " judges incomplete.")

    _renamed = model_validator(mode="before")(_refuse_renamed)


class TurnDetection(ApiModel):
    """End-of-turn detection: VAD plus either the smart-turn model or a plain silence timeout."""

    vad: Vad = Field(default_factory=Vad, description="Voice activity detection settings.")
    detector: Literal["smart-turn", "speech-timeout"] = Field(
        default="smart-turn", description="smart-turn (an audio model judges whether the caller finished) or"
                                          " speech-timeout (silence alone ends the turn).")
    timeouts: TurnTimeouts = Field(default_factory=TurnTimeouts, description="Turn-ending timeouts.")


class Interruptions(ApiModel):
    """Barge-in: the caller's voice pauses the agent at once; the words that follow decide whether the reply is
    cancelled (an interruption), resumed (only backchannels) or resumed after a timeout (no words: a noise)."""

    enabled: bool = Field(default=True, description="Callers may interrupt the agent while it speaks.")
    min_words: int = Field(default=0, ge=0, le=20,
                           description="Words, not counting backchannels, the caller must say over the agent before"
                                       " its reply is cancelled (0 and 1: the first such word; the voice alone"
                                       " only pauses it). A silent agent's turn starts at the voice when 0, at"
                                       " the first word otherwise.")
    backchannels: list[str] | None = Field(
        default=None, max_length=32,
        description="Short words a caller says while listening (\"mhm\", \"okay\", \"yeah\") that keep the agent"
                    " talking. Unset: the defaults of the STT language; empty: every word interrupts.",
        json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 40}})
    false_interruption_timeout_ms: int = Field(
        default=2000, ge=0, le=10000,
        description="When the agent paused for a sound and no words followed within this long, it resumes its"
                    " reply where it paused (0: a pause always ends the reply).")

    @field_validator("backchannels")
    @classmethod
    def _backchannel_lengths(cls, value: list[str] | None) -> list[str] | None:
        for phrase in value or []:
            if not 1 <= len(phrase) <= 40:
                raise ValueError("each backchannel must have 1 to 40 characters")
        return value


class ToolHeader(ApiModel):
    """An HTTP header sent with a tool call; secret values come from a Secret, never from the spec."""

    model_config = {"json_schema_extra": validations(cel(
        "has(self.value) != has(self.secretKeyRef)", "set exactly one of value and secretKeyRef"))}

    name: str = Field(description="Header name.", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9-]+$")
    value: str | None = Field(default=None, max_length=1024, description="A literal, non-secret value.")
    secret_key_ref: SecretKeyRef | None = Field(default=None, description="Take the value from this Secret key.")

    @model_validator(mode="after")
    def _one_source(self) -> "ToolHeader":
        if (self.value is None) == (self.secret_key_ref is None):
            raise ValueError(f"header {self.name!r}: set exactly one of value and secretKeyRef")
        return self


class ToolHttp(ApiModel):
    """Where and how the worker calls the tool. The URL is subject to the platform's outbound policy."""

    url: str = Field(description="http(s) URL of the tool endpoint. Arguments go as JSON (query string for GET).",
                     min_length=8, max_length=2048, pattern=HTTP_URL)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(default="POST", description="HTTP method.")
    timeout_ms: int = Field(default=5000, ge=100, le=30000, description="Give up (and apologise) after this long.")
    headers: list[ToolHeader] = Field(default_factory=list, max_length=16, description="Extra request headers.")


class ToolFiller(ApiModel):
    """What the agent says while a slow tool runs, so the caller never hears dead air."""

    after_ms: int = Field(default=800, ge=0, le=10000, description="Say the filler once the tool has run this long.")
    say: str = Field(default="One moment please.", min_length=1, max_length=300, description="The filler phrase.")


class Tool(ApiModel):
    """A function the LLM may call; the worker runs it as an HTTP request."""

    name: str = Field(description="Function name the LLM sees.", max_length=64, pattern=TOOL_NAME)
    description: str = Field(default="", max_length=1024, description="What the tool does, for the LLM.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema 2020-12 (type: object) of the tool's arguments; arguments are validated against"
                    f" it. At most {MAX_TOOL_SCHEMA_BYTES} bytes, {MAX_TOOL_SCHEMA_DEPTH} levels deep and"
                    f" {MAX_TOOL_SCHEMA_NODES} values. Self-contained: $ref and $dynamicRef only to '#...' inside"
                    " it (put shared parts under $defs), no $id, $schema only the 2020-12 dialect. Its `pattern`s"
                    " and `patternProperties` are RE2." + _BUDGET_NOTE,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    http: ToolHttp = Field(description="The HTTP endpoint that implements the tool.")
    interruptible: bool = Field(default=False, description="Barge-in may cancel this tool; when false the caller is"
                                                           " muted for barge-in until it completes.")
    idempotent: bool = Field(default=False, description="Safe to run twice; a non-idempotent tool never is.")
    filler: ToolFiller = Field(default_factory=ToolFiller, description="Filler phrase for slow calls.")

    @field_validator("parameters")
    @classmethod
    def _json_schema_object(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Only cheap, bounded checks here (the gateway's request parse runs them on its event loop); meta-validation
        # and the RE2 budget are VoiceAgentSpec's, which the gateway runs off its loop.
        tool_schema.check_shape(value)
        if value.get("type") != "object":
            raise ValueError('parameters must be a JSON Schema with "type": "object"')
        if not isinstance(value.get("properties", {}), dict):
            raise ValueError("parameters.properties must be an object")
        return value


class ToolCall(ApiModel):
    """A tool call the scripted LLM makes when an intent matches."""

    name: str = Field(description="Name of a tool declared in spec.tools.", max_length=64, pattern=TOOL_NAME)
    arguments: dict[str, Any] = Field(default_factory=dict, description="Arguments; `{slot}` takes a named RE2 group.",
                                      json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})

    @field_validator("arguments")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        tool_schema.check_nesting(value, "arguments")  # before json.dumps, which would recurse past the limit
        if len(json.dumps(value)) > MAX_TOOL_ARGUMENT_BYTES:
            raise ValueError(f"arguments are larger than {MAX_TOOL_ARGUMENT_BYTES} bytes")
        return value


class Intent(ApiModel):
    """For the offline `scripted` LLM: what the caller says (keywords or RE2 patterns) and how the agent answers."""

    model_config = {"json_schema_extra": validations(
        cel("(has(self.keywords) && size(self.keywords) > 0) || (has(self.patterns) && size(self.patterns) > 0)", "give at least one keyword or pattern"),
        cel("has(self.reply) || has(self.toolCall)", "give a reply, a toolCall, or both"),
    )}

    name: str = name_field("Intent name (unique in the agent).")
    keywords: list[str] = Field(default_factory=list, max_length=32,
                                description="Matches when the caller's words contain all words of any keyword phrase.",
                                json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 100}})
    patterns: list[str] = Field(default_factory=list, max_length=16,
                                description="RE2 patterns (linear time), matched case-insensitively. Named groups"
                                            " fill `{name}` in the reply and tool arguments." + _BUDGET_NOTE,
                                json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 256}})
    reply: str | None = Field(default=None, max_length=2000,
                              description="What the agent says. After a tool call, `{result}` is its spoken result.")
    tool_call: ToolCall | None = Field(default=None, description="Call this tool, then speak the reply.")
    correctable: bool = Field(default=False,
                              description="Right after this intent filled its slots, a turn like \"no, I said 7302\""
                                          " puts the new value in the slot and runs the intent again.")

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        for keyword in value:
            if not 1 <= len(keyword) <= 100:
                raise ValueError("each keyword must have 1 to 100 characters")
        return value

    @field_validator("patterns")
    @classmethod
    def _pattern_lengths(cls, value: list[str]) -> list[str]:
        # Compiling is VoiceAgentSpec's job: one budget over the whole spec, stopping at the first excess.
        for pattern in value:
            if not 1 <= len(pattern) <= 256:
                raise ValueError("each pattern must have 1 to 256 characters")
        return value

    @model_validator(mode="after")
    def _matchable_and_answerable(self) -> "Intent":
        if not self.keywords and not self.patterns:
            raise ValueError(f"intent {self.name!r}: give at least one keyword or pattern")
        if self.reply is None and self.tool_call is None:
            raise ValueError(f"intent {self.name!r}: give a reply, a toolCall, or both")
        return self


class Region(ApiModel):
    """A region the agent runs in, with its warm pool bounds."""

    model_config = {"json_schema_extra": validations(
        cel("self.minWorkers <= self.maxWorkers", "minWorkers must not exceed maxWorkers", ".minWorkers"))}

    name: str = name_field("Region name, matched against nodes' topology.kubernetes.io/region label.")
    min_workers: int = Field(default=1, ge=0, le=1000, description="Workers kept running even with no calls.")
    max_workers: int = Field(default=10, ge=1, le=1000, description="Upper bound of the region's pool.")

    @model_validator(mode="after")
    def _bounds(self) -> "Region":
        if self.min_workers > self.max_workers:
            raise ValueError(f"region {self.name!r}: minWorkers ({self.min_workers}) must not exceed maxWorkers"
                             f" ({self.max_workers})")
        return self


class Scaling(ApiModel):
    """Warm-pool scaling: keep bufferSessions free slots ready per region."""

    sessions_per_worker: int = Field(default=4, ge=1, le=100, description="Concurrent calls one worker serves.")
    buffer_sessions: int = Field(default=2, ge=0, le=1000, description="Free slots kept warm per region.")
    scale_down_delay_seconds: int = Field(default=60, ge=0, le=3600,
                                          description="Demand must stay lower this long before workers are removed.")
    spare_capacity: Literal["WorkerLoss", "BufferOnly"] = Field(
        default="WorkerLoss",
        description="WorkerLoss: while the region has live calls, also keep enough free slots on other workers to"
                    " take every call of its busiest worker (N+1), within maxWorkers and the tenant's quota, so a"
                    " lost worker's calls are recovered at once. BufferOnly: keep only bufferSessions free.")


class ResourceList(ApiModel):
    cpu: str | None = Field(default=None, max_length=32, pattern=QUANTITY, description="CPU quantity, e.g. 500m.")
    memory: str | None = Field(default=None, max_length=32, pattern=QUANTITY, description="Memory quantity, e.g. 512Mi.")


class Resources(ApiModel):
    """Container resources of each worker."""

    requests: ResourceList = Field(default=ResourceList(cpu="500m", memory="512Mi"),
                                   description="Guaranteed resources.")
    limits: ResourceList = Field(default=ResourceList(memory="1Gi"), description="Upper limits.")


class EnvVar(ApiModel):
    """An environment variable for the worker; VOXFLEET_ and OTEL_ names are the platform's and are refused (OTEL_*
    would rename the worker's service or tenant in the shared telemetry, or send its spans elsewhere)."""

    model_config = {"json_schema_extra": validations(
        cel("!self.name.startsWith('VOXFLEET_') && !self.name.startsWith('OTEL_')",
            "names starting with VOXFLEET_ or OTEL_ are reserved for the platform", ".name"),
        cel("!(has(self.value) && has(self.secretKeyRef))", "set at most one of value and secretKeyRef"))}

    name: str = Field(description="Variable name.", min_length=1, max_length=128, pattern=ENV_NAME)
    value: str | None = Field(default=None, max_length=4096, description="Literal value.")
    secret_key_ref: SecretKeyRef | None = Field(default=None, description="Take the value from this Secret key.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith(RESERVED_ENV_PREFIXES):
            raise ValueError("names starting with VOXFLEET_ or OTEL_ are reserved for the platform")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "EnvVar":
        if self.value is not None and self.secret_key_ref is not None:
            raise ValueError(f"env {self.name!r}: set at most one of value and secretKeyRef")
        return self


class Worker(ApiModel):
    """Worker pod settings a tenant may choose. Image, service account and security come from the platform."""

    resources: Resources = Field(default_factory=Resources, description="Container resources.")
    env: list[EnvVar] = Field(default_factory=list, max_length=32, description="Extra environment variables.",
                              json_schema_extra={"x-kubernetes-list-type": "map",
                                                 "x-kubernetes-list-map-keys": ["name"]})
    image: str | None = Field(default=None, max_length=512, pattern=r"^[^\s]+$",
                              description="Worker image; used only when the platform's allow-list permits it.")


class Limits(ApiModel):
    """Per-session limits."""

    max_session_seconds: int = Field(default=1800, ge=10, le=14400,
                                     description="A call ends after this long; also the drain timeout on shutdown.")
    idle_timeout_seconds: int = Field(default=60, ge=5, le=3600,
                                      description="A call ends after this long with no speech from either side.")
    memory_recycle_mb: int | None = Field(
        default=None, ge=128, le=262144,
        description="A worker whose resident memory passes this many MiB stops taking calls, finishes its live ones"
                    " and restarts. Unset: 90% of worker.resources.limits.memory when that is set.")


class Recovery(ApiModel):
    """What happens to a call whose worker is lost."""

    deadline_ms: int = Field(default=15000, ge=1000, le=120000,
                             description="Keep looking this long for a worker to continue a lost worker's call:"
                                         " another worker of the region, the restarted one, or a worker of the next"
                                         " region by latency joining the same room.")


class ReplyFiller(ApiModel):
    """What the agent says when its language model is slow to start answering (as tools have their filler)."""

    after_ms: int = Field(default=1500, ge=0, le=10000,
                          description="Say the filler once the caller's turn ended this long ago and the model has"
                                      " not started its answer (0: never).")
    say: str = Field(default="One moment.", min_length=1, max_length=300, description="The filler phrase.")


class NoMatch(ApiModel):
    """For the offline `scripted` LLM: what the agent says when no intent matches the caller's words, or the
    recogniser was unsure of them."""

    retry: str = Field(default="Sorry, could you say that again?", min_length=1, max_length=1000,
                       description="Said after a turn the agent did not understand.")
    max_retries: int = Field(default=1, ge=0, le=5,
                             description="Turns in a row not understood before the handoff line is said instead.")
    handoff: str = Field(default="Sorry, I can't help with that. Let me get someone who can.", min_length=1,
                         max_length=1000, description="Said when the retries are used up.")


class Observability(ApiModel):
    record_transcripts: bool = Field(default=False, description="Log and return transcripts (off: never stored).")


def _unique_names(items: list[Any], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"{what} names must be unique: {item.name!r} appears twice")
        seen.add(item.name)


_LIST_MAP = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class VoiceAgentSpec(ApiModel):
    """What the agent says and does, where it runs, and how its warm pool scales. The whole spec, as compact JSON
    without its defaults, may be at most 196,608 bytes (192 KiB)."""

    model_config = {"json_schema_extra": validations(
        cel("!has(self.intents) || self.intents.all(i, !has(i.toolCall) ||"
            " (has(self.tools) && self.tools.exists(t, t.name == i.toolCall.name)))",
            "every intent's toolCall must name a tool declared in spec.tools", ".intents", "FieldValueInvalid"),
    )}

    greeting: str = Field(default="", max_length=1000, description="Said when a call starts (empty: wait for the"
                                                                   " caller).")
    system_prompt: str = Field(default="", max_length=16384, description="Instructions for the LLM.")
    pipeline: Pipeline = Field(default_factory=Pipeline, description="STT, LLM and TTS providers.")
    turn_detection: TurnDetection = Field(default_factory=TurnDetection, description="End-of-turn detection.")
    interruptions: Interruptions = Field(default_factory=Interruptions, description="Barge-in behaviour.")
    tools: list[Tool] = Field(default_factory=list, max_length=32, description="Functions the LLM may call.",
                              json_schema_extra=_LIST_MAP)
    intents: list[Intent] = Field(default_factory=list, max_length=64,
                                  description="Intents for the offline scripted LLM." + _BUDGET_NOTE,
                                  json_schema_extra=_LIST_MAP)
    regions: list[Region] = Field(min_length=1, max_length=10, description="Regions with a warm pool.",
                                  json_schema_extra=_LIST_MAP)
    scaling: Scaling = Field(default_factory=Scaling, description="Warm-pool scaling.")
    worker: Worker = Field(default_factory=Worker, description="Worker pod settings.")
    limits: Limits = Field(default_factory=Limits, description="Per-session limits.")
    recovery: Recovery = Field(default_factory=Recovery, description="Continuing calls whose worker is lost.")
    observability: Observability = Field(default_factory=Observability, description="Transcripts and telemetry.")
    reply_filler: ReplyFiller = Field(default_factory=ReplyFiller, description="Filler for a slow language model.")
    no_match: NoMatch = Field(default_factory=NoMatch,
                              description="The scripted LLM's answers to turns it did not understand.")

    @model_validator(mode="after")
    def _cross_field(self) -> "VoiceAgentSpec":
        _unique_names(self.tools, "tool")
        _unique_names(self.intents, "intent")
        _unique_names(self.regions, "region")
        _unique_names(self.worker.env, "env")
        declared = {tool.name for tool in self.tools}
        for intent in self.intents:
            if intent.tool_call and intent.tool_call.name not in declared:
                raise ValueError(f"intent {intent.name!r} calls tool {intent.tool_call.name!r}, which spec.tools"
                                 " does not declare")
        return self

    @model_validator(mode="after")
    def _bounded_size(self) -> "VoiceAgentSpec":
        # What the tenant wrote, defaults left out: the same figure for the gateway's input and for the stored
        # object, whose defaults the CRD schema filled in.
        size = len(json.dumps(self.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                              separators=(",", ":")))
        if size > MAX_SPEC_BYTES:
            raise ValueError(f"the spec is {size} bytes of JSON (defaults left out), more than {MAX_SPEC_BYTES};"
                             " shorten the system prompt, tools or intents")
        return self

    @model_validator(mode="after")
    def _bounded_costly_checks(self, info: ValidationInfo) -> "VoiceAgentSpec":
        """Tool schemas meta-validated and self-contained, every RE2 pattern compiled under one budget: the costly
        part of admission, bounded, stopping at the first problem (a FieldProblem naming its field)."""
        if (info.context or {}).get("costly_checks", True) is False:
            return self
        budget = ProgramBudget()
        for index, tool in enumerate(self.tools):
            field = f"tools[{index}].parameters"
            check_self_contained(tool.parameters, field)
            check_meta(tool.parameters, field)
            for path, pattern in schema_patterns(tool.parameters, field):
                budget.compile(pattern, path)
        for index, intent in enumerate(self.intents):
            for number, pattern in enumerate(intent.patterns):
                budget.compile(pattern, f"intents[{index}].patterns[{number}]", case_sensitive=False)
        return self


class RegionStatus(ApiModel):
    name: str = Field(description="Region name.", max_length=63)
    desired_workers: int = Field(default=0, ge=0, description="Workers the scaler wants.")
    ready_workers: int = Field(default=0, ge=0, description="Workers ready to take calls.")
    active_sessions: int = Field(default=0, ge=0, description="Calls in progress.")
    free_slots: int = Field(default=0, ge=0, description="Slots ready for new calls.")


class VoiceAgentStatus(ApiModel):
    """What the operator observed (written by the operator only)."""

    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation last reconciled.")
    regions: list[RegionStatus] = Field(default_factory=list, description="Per-region pool figures.")
    region_names: str = Field(default="", description="Regions, comma-separated (for kubectl get).")
    ready_workers: int = Field(default=0, ge=0, description="Ready workers over all regions.")
    active_sessions: int = Field(default=0, ge=0, description="Calls in progress over all regions.")
    free_slots: int = Field(default=0, ge=0, description="Free slots over all regions.")
    conditions: list[Condition] = condition_list("Ready, Progressing and Degraded, one entry per type.")

    _unique_condition_types = field_validator("conditions")(check_condition_types_unique)


class VoiceAgent(ApiModel):
    """A voice agent of one tenant, run by warm worker pools in each of its regions."""

    api_version: Literal["voxfleet.dev/v1alpha1"] = Field(default="voxfleet.dev/v1alpha1")
    kind: Literal["VoiceAgent"] = Field(default="VoiceAgent")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: VoiceAgentSpec
    status: VoiceAgentStatus | None = None

    model_config = {"extra": "ignore"}
