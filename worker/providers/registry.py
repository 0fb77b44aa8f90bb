"""One registry from the spec's provider names to the builders that make Pipecat services for a session.

A builder is `builder(stage, context) -> service`, where `stage` is the spec's SttStage/LlmStage/TtsStage and
`context` a ProviderContext (the whole agent config, shared per-process resources, settings). The offline
providers register here; the cloud providers (voxfleet.worker.providers.cloud) register themselves with
`register_stt/register_llm/register_tts` when that module is imported, which `load_providers()` does once at
warm start. A spec naming a provider nobody registered fails the session with a clear error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from voxfleet.api.settings import PlatformSettings
from voxfleet.api.worker_config import WorkerConfig
from voxfleet.worker.settings import WorkerSettings

log = structlog.get_logger("voxfleet.worker.providers")

Builder = Callable[[Any, "ProviderContext"], Any]
_STT: dict[str, Builder] = {}
_LLM: dict[str, Builder] = {}
_TTS: dict[str, Builder] = {}
_loaded = False


@dataclass
class ProviderContext:
    """What a builder may use. `shared` holds per-process resources built at warm start (e.g. decoder pools)."""

    config: WorkerConfig
    settings: WorkerSettings
    platform: PlatformSettings
    shared: dict[str, Any] = field(default_factory=dict)
    audio_in_sample_rate: int = 16000
    audio_out_sample_rate: int = 24000


class UnknownProvider(ValueError):
    pass


def register_stt(name: str, builder: Builder) -> None:
    _STT[name] = builder


def register_llm(name: str, builder: Builder) -> None:
    _LLM[name] = builder


def register_tts(name: str, builder: Builder) -> None:
    _TTS[name] = builder


def _build(table: dict[str, Builder], kind: str, stage: Any, context: ProviderContext) -> Any:
    builder = table.get(stage.provider)
    if builder is None:
        raise UnknownProvider(f"no {kind} provider {stage.provider!r} in this worker build"
                              f" (available: {', '.join(sorted(table)) or 'none'})")
    return builder(stage, context)


def build_stt(context: ProviderContext) -> Any:
    return _build(_STT, "stt", context.config.spec.pipeline.stt, context)


def build_llm(context: ProviderContext) -> Any:
    return _build(_LLM, "llm", context.config.spec.pipeline.llm, context)


def build_tts(context: ProviderContext) -> Any:
    return _build(_TTS, "tts", context.config.spec.pipeline.tts, context)


def load_providers() -> None:
    """Register the offline providers and, when present in this build, the cloud ones (once per process)."""
    global _loaded
    if _loaded:
        return
    importlib.import_module("voxfleet.worker.providers.offline")
    try:
        importlib.import_module("voxfleet.worker.providers.cloud")
    except ModuleNotFoundError as error:
        if error.name != "voxfleet.worker.providers.cloud":
            raise
        log.warning("cloud providers are not in this build; only offline providers are available")
    _loaded = True
