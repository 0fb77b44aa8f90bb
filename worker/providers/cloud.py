"""Cloud providers: Pipecat's services for Deepgram, OpenAI (and any OpenAI-compatible baseUrl: vLLM, Ollama,
llama.cpp), Anthropic, Cartesia and ElevenLabs, built from a pipeline stage of the spec.

Keys come from the stage's secretRef (`read_secret`, never logged). A stage's baseUrl is tenant input: it is
checked by the outbound policy when the service is built (syntax, IP literals) and again on every connection,
which goes to the address that was checked (HTTP clients through the policy's pinned transport, websocket
services through pinned connect arguments). Deepgram's SDK opens its own websocket, so there the check runs
before each connect (resolution-time only; the egress NetworkPolicy backs it). Without a baseUrl the
provider's official endpoint is used with the SDK's defaults (which honour the cluster's egress proxy).

Importing this module registers the builders with the worker's provider registry; `CLOUD_STT`, `CLOUD_LLM` and
`CLOUD_TTS` map provider names to `builder(stage, context) -> Pipecat service`.

Options (spec `pipeline.<stage>.options`, strings; unknown names are refused):
- llm: `temperature` (0..2), `maxTokens` (1..32768), `topP` (0..1), `seed`
- stt deepgram: `endpointing` (ms), `smartFormat`, `punctuate`, `utteranceEndMs`; stt openai: `prompt`
- tts: `speed` (openai 0.25..4, cartesia -1..1 as generation speed); elevenlabs: `stability`, `similarityBoost`
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from pipecat.services.anthropic.llm import AnthropicLLMService
from pipecat.services.cartesia.tts import CartesiaTTSService, GenerationConfig
from pipecat.services.deepgram.stt import DeepgramSTTService
from pipecat.services.elevenlabs.tts import ElevenLabsTTSService
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transcriptions.language import Language

from voxfleet.api.outbound import HTTP_SCHEMES, WEBSOCKET_SCHEMES, OutboundPolicy, OutboundURLRefused
from voxfleet.api.worker_config import read_secret
from voxfleet.worker.providers.registry import ProviderContext, register_llm, register_stt, register_tts

Builder = Callable[[Any, ProviderContext], Any]

OUTBOUND_POLICY = "outbound.policy"  # ProviderContext.shared keys: one per process, shared by every session
OUTBOUND_HTTPX2 = "outbound.httpx2-client"
KEYLESS = "no-key"  # OpenAI-compatible servers without auth; never the environment's OPENAI_API_KEY


# -- shared pieces -----------------------------------------------------------------------------------------------


def outbound_policy(context: ProviderContext) -> OutboundPolicy:
    if OUTBOUND_POLICY not in context.shared:
        context.shared[OUTBOUND_POLICY] = OutboundPolicy.from_settings(context.platform)
    return context.shared[OUTBOUND_POLICY]


def _pinned_http_client(context: ProviderContext) -> Any:
    """One httpx2 client (the openai/anthropic SDKs' HTTP library) per process, its pool kept warm."""
    if OUTBOUND_HTTPX2 not in context.shared:
        import httpx2

        context.shared[OUTBOUND_HTTPX2] = outbound_policy(context).httpx2_client(
            timeout=httpx2.Timeout(60.0, connect=5.0),
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=60))
    return context.shared[OUTBOUND_HTTPX2]


async def aclose_cloud_clients(context: ProviderContext) -> None:
    """Close the process-wide clients this module opened (at worker shutdown)."""
    client = context.shared.pop(OUTBOUND_HTTPX2, None)
    if client is not None:
        await client.aclose()


def _base_url(stage: Any, context: ProviderContext) -> str | None:
    """The stage's baseUrl after the build-time checks; a clear OutboundURLRefused otherwise."""
    if not stage.base_url:
        return None
    outbound_policy(context).check_url(stage.base_url)
    return stage.base_url.rstrip("/")


def _websocket_base(base_url: str) -> str:
    return "wss://" + base_url[len("https://"):] if base_url.startswith("https://") else \
        "ws://" + base_url[len("http://"):]


def _api_key(stage: Any) -> str | None:
    return read_secret(stage.secret_ref) if stage.secret_ref is not None else None


def _language(tag: str) -> Language:
    for candidate in (tag, tag.split("-")[0]):
        try:
            return Language(candidate)
        except ValueError:
            continue
    raise ValueError(f"language {tag!r} is not one Pipecat knows")


def _options(stage: Any, kinds: dict[str, Callable[[str, str], Any]]) -> dict[str, Any]:
    unknown = sorted(set(stage.options) - set(kinds))
    if unknown:
        raise ValueError(f"{stage.provider}: unknown option(s) {', '.join(map(repr, unknown))}"
                         f" (known: {', '.join(sorted(kinds)) or 'none'})")
    return {name: kinds[name](name, value) for name, value in stage.options.items()}


def _number(low: float, high: float, kind: type = float) -> Callable[[str, str], Any]:
    def parse(name: str, text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"option {name!r} must be a {kind.__name__}, got {text[:40]!r}") from None
        if not low <= value <= high:
            raise ValueError(f"option {name!r} must be between {low} and {high}, got {value}")
        return value
    return parse


def _flag(name: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"option {name!r} must be true or false, got {text[:40]!r}")
    return text.lower() == "true"


def _text(name: str, text: str) -> str:
    return text


# -- services that connect through the outbound policy ------------------------------------------------------------


class PinnedOpenAILLMService(OpenAILLMService):
    """OpenAILLMService whose client connects through the outbound policy's pinned transport."""

    def __init__(self, *, http_client: Any, **kwargs: Any) -> None:
        self._pinned_http_client = http_client  # read by create_client, which the parent's __init__ calls
        super().__init__(**kwargs)

    def create_client(self, api_key=None, base_url=None, organization=None, project=None, default_headers=None,
                      **kwargs):
        from openai import AsyncOpenAI

        return AsyncOpenAI(api_key=api_key, base_url=base_url, organization=organization, project=project,
                           http_client=self._pinned_http_client, default_headers=default_headers)


class _PinnedWebsocket:
    """For Pipecat websocket services: every connect goes to an address the outbound policy checked."""

    _outbound_policy: OutboundPolicy | None = None

    async def _websocket_connect(self, uri: str, **kwargs: Any) -> Any:
        if self._outbound_policy is not None:
            kwargs.update(await self._outbound_policy.websocket_connect_kwargs(uri))
        return await super()._websocket_connect(uri, **kwargs)  # type: ignore[misc]


class PinnedCartesiaTTSService(_PinnedWebsocket, CartesiaTTSService):
    def __init__(self, *, outbound_policy: OutboundPolicy | None, **kwargs: Any) -> None:
        self._outbound_policy = outbound_policy
        super().__init__(**kwargs)


class PinnedElevenLabsTTSService(_PinnedWebsocket, ElevenLabsTTSService):
    def __init__(self, *, outbound_policy: OutboundPolicy | None, **kwargs: Any) -> None:
        self._outbound_policy = outbound_policy
        super().__init__(**kwargs)


# Whether the Deepgram connection being opened (in this task's context) offers permessage-deflate.
_DEEPGRAM_COMPRESSION: ContextVar[bool] = ContextVar("deepgram_websocket_compression", default=True)


def _deepgram_connect_as_configured() -> None:
    """Deepgram's SDK opens its websocket with the websockets library's defaults, permessage-deflate offered: on
    raw PCM that saves next to nothing and was half of the worker's websocket send time (issue 19's profile). The
    SDK has no option for it, so its connect function is wrapped once per process to pass `compression=None`
    when the connecting service asked for that (a context variable the connection task inherits)."""
    from deepgram.listen.v1 import client

    connect = client.websockets_client_connect
    if getattr(connect, "voxfleet_wrapped", False):
        return

    def connect_as_configured(*args: Any, **kwargs: Any) -> Any:
        if not _DEEPGRAM_COMPRESSION.get():
            kwargs["compression"] = None
        return connect(*args, **kwargs)

    connect_as_configured.voxfleet_wrapped = True  # type: ignore[attr-defined]
    client.websockets_client_connect = connect_as_configured


class CheckedDeepgramSTTService(DeepgramSTTService):
    """DeepgramSTTService that checks a tenant's baseUrl before every (re)connect (a refusal is a fatal error),
    its websocket without permessage-deflate unless `websocket_compression`."""

    def __init__(self, *, outbound_policy: OutboundPolicy | None, websocket_compression: bool = True,
                 **kwargs: Any) -> None:
        self._outbound_policy = outbound_policy
        self._checked_url = kwargs.get("base_url") or ""
        self._websocket_compression = websocket_compression
        _deepgram_connect_as_configured()
        super().__init__(**kwargs)

    async def _connect(self) -> None:
        if self._outbound_policy is not None and self._checked_url:
            try:
                await self._outbound_policy.check(self._checked_url, HTTP_SCHEMES + WEBSOCKET_SCHEMES)
            except OutboundURLRefused as refused:
                await self.push_error(error_msg=str(refused), exception=refused, fatal=True)
                return
        # The connection task started inside super()._connect() copies this context, reconnects included.
        compression = _DEEPGRAM_COMPRESSION.set(self._websocket_compression)
        try:
            await super()._connect()
        finally:
            _DEEPGRAM_COMPRESSION.reset(compression)


# -- STT -----------------------------------------------------------------------------------------------------------


def deepgram_stt(stage: Any, context: ProviderContext) -> DeepgramSTTService:
    options = _options(stage, {"endpointing": _number(0, 10000, int), "smartFormat": _flag,
                               "punctuate": _flag, "utteranceEndMs": _number(1000, 5000, int)})
    base_url = _base_url(stage, context)
    settings = DeepgramSTTService.Settings(model=stage.model or "nova-3-general", language=_language(stage.language))
    for option, field_name in (("endpointing", "endpointing"), ("smartFormat", "smart_format"),
                               ("punctuate", "punctuate"), ("utteranceEndMs", "utterance_end_ms")):
        if option in options:
            setattr(settings, field_name, options[option])
    return CheckedDeepgramSTTService(api_key=_api_key(stage) or "", base_url=base_url or "",
                                     outbound_policy=outbound_policy(context) if base_url else None,
                                     websocket_compression=context.settings.stt_websocket_compression,
                                     sample_rate=context.audio_in_sample_rate, settings=settings)


def openai_stt(stage: Any, context: ProviderContext) -> OpenAISTTService:
    options = _options(stage, {"prompt": _text})
    base_url = _base_url(stage, context)
    settings = OpenAISTTService.Settings(language=_language(stage.language))
    if stage.model:
        settings.model = stage.model
    if "prompt" in options:
        settings.prompt = options["prompt"]
    return OpenAISTTService(api_key=_api_key(stage) or KEYLESS, base_url=base_url,
                            http_client=_pinned_http_client(context) if base_url else None,
                            sample_rate=context.audio_in_sample_rate, settings=settings)


# -- LLM -----------------------------------------------------------------------------------------------------------

_LLM_OPTIONS = {"temperature": _number(0.0, 2.0), "maxTokens": _number(1, 32768, int), "topP": _number(0.0, 1.0),
                "seed": _number(0, 2**31 - 1, int)}


def _llm_settings(settings: Any, stage: Any) -> Any:
    options = _options(stage, _LLM_OPTIONS)
    if stage.model:
        settings.model = stage.model
    for option, field_name in (("temperature", "temperature"), ("maxTokens", "max_tokens"), ("topP", "top_p"),
                               ("seed", "seed")):
        if option in options:
            setattr(settings, field_name, options[option])
    return settings


def openai_llm(stage: Any, context: ProviderContext) -> OpenAILLMService:
    settings = _llm_settings(OpenAILLMService.Settings(), stage)
    base_url = _base_url(stage, context)
    if base_url is None:
        return OpenAILLMService(api_key=_api_key(stage), settings=settings)
    # An OpenAI-compatible server (vLLM, Ollama, llama.cpp) or a proxy: connections go through the policy.
    return PinnedOpenAILLMService(api_key=_api_key(stage) or KEYLESS, base_url=base_url,
                                  http_client=_pinned_http_client(context), settings=settings)


def anthropic_llm(stage: Any, context: ProviderContext) -> AnthropicLLMService:
    settings = _llm_settings(AnthropicLLMService.Settings(), stage)
    base_url = _base_url(stage, context)
    api_key = _api_key(stage) or ""
    client = None
    if base_url is not None:
        from anthropic import AsyncAnthropic

        client = AsyncAnthropic(api_key=api_key, base_url=base_url, http_client=_pinned_http_client(context))
    return AnthropicLLMService(api_key=api_key, client=client, settings=settings)


# -- TTS -----------------------------------------------------------------------------------------------------------


def cartesia_tts(stage: Any, context: ProviderContext) -> CartesiaTTSService:
    options = _options(stage, {"speed": _number(-1.0, 1.0)})
    if not stage.voice:
        raise ValueError("cartesia: set pipeline.tts.voice to a Cartesia voice id")
    base_url = _base_url(stage, context)
    settings = CartesiaTTSService.Settings(voice=stage.voice, language=_language(stage.language))
    if stage.model:
        settings.model = stage.model
    if "speed" in options:
        settings.generation_config = GenerationConfig(speed=options["speed"])
    url = f"{_websocket_base(base_url)}/tts/websocket" if base_url else "wss://api.cartesia.ai/tts/websocket"
    return PinnedCartesiaTTSService(api_key=_api_key(stage) or "", url=url, settings=settings,
                                    sample_rate=context.audio_out_sample_rate,
                                    outbound_policy=outbound_policy(context) if base_url else None)


def elevenlabs_tts(stage: Any, context: ProviderContext) -> ElevenLabsTTSService:
    options = _options(stage, {"stability": _number(0.0, 1.0), "similarityBoost": _number(0.0, 1.0),
                               "speed": _number(0.7, 1.2)})
    if not stage.voice:
        raise ValueError("elevenlabs: set pipeline.tts.voice to an ElevenLabs voice id")
    base_url = _base_url(stage, context)
    settings = ElevenLabsTTSService.Settings(voice=stage.voice, language=_language(stage.language))
    if stage.model:
        settings.model = stage.model
    for option, field_name in (("stability", "stability"), ("similarityBoost", "similarity_boost"),
                               ("speed", "speed")):
        if option in options:
            setattr(settings, field_name, options[option])
    return PinnedElevenLabsTTSService(api_key=_api_key(stage) or "",
                                      url=_websocket_base(base_url) if base_url else "wss://api.elevenlabs.io",
                                      settings=settings, sample_rate=context.audio_out_sample_rate,
                                      outbound_policy=outbound_policy(context) if base_url else None)


def openai_tts(stage: Any, context: ProviderContext) -> OpenAITTSService:
    options = _options(stage, {"speed": _number(0.25, 4.0)})
    base_url = _base_url(stage, context)
    settings = OpenAITTSService.Settings(voice=stage.voice or "alloy")
    if stage.model:
        settings.model = stage.model
    if "speed" in options:
        settings.speed = options["speed"]
    # OpenAI speech is 24 kHz only; the pipeline's output resamples if it runs at another rate.
    return OpenAITTSService(api_key=_api_key(stage) or KEYLESS, base_url=base_url,
                            http_client=_pinned_http_client(context) if base_url else None,
                            sample_rate=24000, settings=settings)


CLOUD_STT: dict[str, Builder] = {"deepgram": deepgram_stt, "openai": openai_stt}
CLOUD_LLM: dict[str, Builder] = {"openai": openai_llm, "anthropic": anthropic_llm}
CLOUD_TTS: dict[str, Builder] = {"cartesia": cartesia_tts, "elevenlabs": elevenlabs_tts, "openai": openai_tts}

for _name, _builder in CLOUD_STT.items():
    register_stt(_name, _builder)
for _name, _builder in CLOUD_LLM.items():
    register_llm(_name, _builder)
for _name, _builder in CLOUD_TTS.items():
    register_tts(_name, _builder)
