"""The offline providers (no keys, no network), registered under the spec's names: pocketsphinx, scripted, espeak.

Options (spec `pipeline.<stage>.options`, strings, bounded by the spec):
- stt `grammar`: `intents` (default when the agent has intents: a JSGF grammar of their phrases) or `none`
  (the full English model).
- llm `fallback`: the old name of spec.noMatch.retry (used when given); `tokenDelayMs`: pause between streamed
  tokens.
- tts `rate`: words per minute (80..450).
"""

from __future__ import annotations

from typing import Any

from voxfleet.api.voiceagent import NoMatch
from voxfleet.worker.providers.espeak_tts import ESpeakTTSService
from voxfleet.worker.providers.pocketsphinx_stt import PocketSphinxSTTService, SphinxDecoderPool
from voxfleet.worker.providers.registry import ProviderContext, register_llm, register_stt, register_tts
from voxfleet.worker.providers.scripted_llm import ScriptedLLMService
from voxfleet.worker.providers.sphinx_grammar import build_grammar, phrases_from_intents

DECODER_POOL = "pocketsphinx.decoders"


def _int_option(options: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(options.get(name, default))
    except ValueError:
        raise ValueError(f"option {name!r} must be a whole number, got {options[name]!r}") from None
    return min(high, max(low, value))


def prepare_pocketsphinx(context: ProviderContext, slots: int) -> None:
    """Warm start: the agent's grammar and one decoder per slot (with `options.rejection: phone-loop`, a phone-loop
    decoder beside each, so speech the grammar can only force its words onto becomes the noMatch path)."""
    spec = context.config.spec
    grammar = None
    if spec.pipeline.stt.options.get("grammar", "intents") == "intents" and spec.intents:
        grammar = build_grammar(phrases_from_intents(spec.intents))
    rejection = spec.pipeline.stt.options.get("rejection", "off")  # the spec model allows only STT_REJECTIONS
    context.shared[DECODER_POOL] = SphinxDecoderPool(grammar, slots, reject_off_script=rejection == "phone-loop")


def _pocketsphinx(stage: Any, context: ProviderContext) -> PocketSphinxSTTService:
    if DECODER_POOL not in context.shared:
        prepare_pocketsphinx(context, 1)
    return PocketSphinxSTTService(context.shared[DECODER_POOL])


def _scripted(stage: Any, context: ProviderContext) -> ScriptedLLMService:
    return ScriptedLLMService(
        context.config.spec.intents,
        no_match=_no_match(stage, context),
        token_delay_s=_int_option(stage.options, "tokenDelayMs", 0, 0, 1000) / 1000,
        fault_injection=context.settings.fault_injection)


def _no_match(stage: Any, context: ProviderContext) -> NoMatch:
    no_match = context.config.spec.no_match
    if "fallback" in stage.options:
        no_match = no_match.model_copy(update={"retry": stage.options["fallback"]})
    return no_match


def _espeak(stage: Any, context: ProviderContext) -> ESpeakTTSService:
    return ESpeakTTSService(voice=stage.voice or "en-us", rate=_int_option(stage.options, "rate", 175, 80, 450),
                            sample_rate=context.audio_out_sample_rate)


register_stt("pocketsphinx", _pocketsphinx)
register_llm("scripted", _scripted)
register_tts("espeak", _espeak)
