"""Pipecat's real cloud services, built by voxfleet's cloud builders, against local servers that speak the
providers' wire protocols: OpenAI Chat Completions (SSE, function calling), Deepgram live (websocket),
Cartesia TTS (websocket). The real client libraries do the talking; nothing here is mocked."""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_asyncio
import structlog
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    ErrorFrame,
    InputAudioRawFrame,
    LLMRunFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.llm_service import FunctionCallParams
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import CollectorRegistry

from tests.fakes.cartesia_server import speak, start_fake_cartesia
from tests.fakes.deepgram_server import start_fake_deepgram
from tests.fakes.http_server import LocalHTTPServer, Reply
from tests.fakes.openai_server import Script, ToolCallPlan, start_fake_openai
from voxfleet.api.common import SecretKeyRef
from voxfleet.api.outbound import OutboundPolicy, OutboundURLRefused
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.voiceagent import LlmStage, SttStage, Tool, TtsStage, VoiceAgentSpec
from voxfleet.api.worker_config import WorkerConfig, secret_env_name
from voxfleet.worker.providers.cloud import (
    CLOUD_LLM,
    CLOUD_STT,
    CLOUD_TTS,
    OUTBOUND_POLICY,
    PinnedOpenAILLMService,
    aclose_cloud_clients,
    cartesia_tts,
    deepgram_stt,
    openai_llm,
)
from voxfleet.worker.providers.registry import ProviderContext
from voxfleet.worker.settings import WorkerSettings
from voxfleet.worker.tools import ToolRunner

KEY_REF = SecretKeyRef(name="provider-keys", key="api-key")
PROVIDER_KEY = "pk-test-5b1e-never-logged"
METRICS = PipelineParams(enable_metrics=True)


@pytest_asyncio.fixture(loop_scope="function")
async def context(monkeypatch):
    monkeypatch.setenv(secret_env_name(KEY_REF), PROVIDER_KEY)
    spec = VoiceAgentSpec.model_validate({"regions": [{"name": "local"}]})
    context = ProviderContext(config=WorkerConfig(tenant="acme", agent="support", namespace="acme", spec=spec),
                              settings=WorkerSettings(),
                              platform=PlatformSettings(outbound_allowed_cidrs=["127.0.0.1/32"]))
    yield context
    await aclose_cloud_clients(context)


def _stage(kind: type, **fields: Any) -> Any:
    return kind.model_validate({"secretRef": KEY_REF.model_dump(), **fields})


def _ttfb(frames, processor_prefix: str) -> list[float]:
    return [data.value for frame in frames if isinstance(frame, MetricsFrame) for data in frame.data
            if isinstance(data, TTFBMetricsData) and data.processor.startswith(processor_prefix) and data.value]


# -- OpenAI-compatible LLM: real SSE, function calling end to end -------------------------------------------------


@pytest.fixture(scope="module")
def weather_tool_server():
    def answer(request):
        return Reply(200, {"city": request.json()["city"], "forecast": "light rain", "temperatureC": 14})

    with LocalHTTPServer(answer) as server:
        yield server


async def test_openai_function_calling_end_to_end(context, weather_tool_server) -> None:
    fake = start_fake_openai(ttft_ms=150, token_delay_ms=5, api_key=PROVIDER_KEY, script=Script(
        tool_call=ToolCallPlan("get_weather", {"city": "Paris"}),
        after_tool="In Paris expect {tool_result} today."))
    try:
        llm = openai_llm(_stage(LlmStage, provider="openai", baseUrl=fake.url, model="fake-model",
                                options={"temperature": "0.3", "maxTokens": "200"}), context)
        assert isinstance(llm, PinnedOpenAILLMService)
        tool = Tool.model_validate({
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
            "http": {"url": f"{weather_tool_server.url}/weather"}})
        runner = ToolRunner([tool], policy=OutboundPolicy(["127.0.0.1/32"]), registry=CollectorRegistry())
        calls: list[str] = []

        async def get_weather(params: FunctionCallParams) -> None:
            calls.append(params.tool_call_id)
            outcome = await runner.run(params.function_name, params.arguments, call_id=params.tool_call_id)
            await params.result_callback(outcome.speakable)

        llm.register_function("get_weather", get_weather)
        llm_context = LLMContext(
            messages=[{"role": "user", "content": "What's the weather in Paris?"}],
            tools=ToolsSchema(standard_tools=[FunctionSchema("get_weather", "Weather for a city",
                                                             {"city": {"type": "string"}}, ["city"])]))
        pair = LLMContextAggregatorPair(llm_context)
        started = time.monotonic()
        down, _ = await run_test(Pipeline([pair.user(), llm, pair.assistant()]),
                                 frames_to_send=[LLMRunFrame(), SleepFrame(sleep=3.0)], pipeline_params=METRICS)
        await runner.aclose()

        assert len(fake.requests) == 2, "one completion asked for the tool, a second one answered"
        first, second = fake.requests
        assert first["stream"] is True and first["model"] == "fake-model" and first["temperature"] == 0.3
        assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
        tool_message = second["messages"][-1]
        assert tool_message["role"] == "tool" and "light rain" in tool_message["content"]
        assert all(h["Authorization"] == f"Bearer {PROVIDER_KEY}" for h in fake.headers)
        assert len(calls) == 1 and len(weather_tool_server.calls("/weather")) >= 1
        assert weather_tool_server.calls("/weather")[-1].json() == {"city": "Paris"}
        final = llm_context.get_messages()[-1]
        assert final["role"] == "assistant"
        assert final["content"] == ("In Paris expect city is Paris, forecast is light rain and temperature c is 14"
                                    " today.")
        ttfbs = _ttfb(down, "PinnedOpenAILLMService")
        assert ttfbs and min(ttfbs) >= 0.14, ttfbs
        assert time.monotonic() - started < 8  # a 3 s listen for the tool call and the answer, plus load
    finally:
        fake.stop()


async def test_a_plain_openai_reply_streams_token_by_token(context) -> None:
    fake = start_fake_openai(ttft_ms=0, token_delay_ms=20, script=Script(reply="One two three four five."))
    try:
        stage = LlmStage.model_validate({"provider": "openai", "baseUrl": fake.url})  # keyless (e.g. vLLM)
        llm = openai_llm(stage, context)
        llm_context = LLMContext(messages=[{"role": "user", "content": "Count to five."}])
        pair = LLMContextAggregatorPair(llm_context)
        await run_test(Pipeline([pair.user(), llm, pair.assistant()]), frames_to_send=[LLMRunFrame(),
                                                                                     SleepFrame(sleep=0.6)])
        assert llm_context.get_messages()[-1] == {"role": "assistant", "content": "One two three four five."}
        assert fake.headers[0]["Authorization"] == "Bearer no-key"
    finally:
        fake.stop()


# -- Deepgram live STT over its websocket protocol ----------------------------------------------------------------


async def test_deepgram_transcribes_what_it_hears(context) -> None:
    fake = start_fake_deepgram(transcripts=["what is the weather in paris"], final_delay_ms=120, api_key=PROVIDER_KEY)
    try:
        stt = deepgram_stt(_stage(SttStage, provider="deepgram", baseUrl=fake.url, model="nova-3",
                                  options={"endpointing": "300", "smartFormat": "true"}), context)
        speech = speak("What is the weather in Paris?", 16000)
        silence = bytes(16000 * 2 * 7 // 10)  # 0.7 s: longer than the endpointing window
        audio = speech + silence
        chunk = 16000 * 2 * 20 // 1000
        frames = [InputAudioRawFrame(audio=audio[i:i + chunk], sample_rate=16000, num_channels=1)
                  for i in range(0, len(audio), chunk)]
        down, up = await run_test(stt, frames_to_send=[SleepFrame(sleep=0.3), *frames, SleepFrame(sleep=1.5)])
        transcripts = [frame.text for frame in down if isinstance(frame, TranscriptionFrame)]
        assert transcripts == ["what is the weather in paris"]
        assert not [frame for frame in up if isinstance(frame, ErrorFrame)]
        query = fake.connections[0]["query"]
        assert query["sample_rate"] == "16000" and query["encoding"] == "linear16"
        assert query["model"] == "nova-3" and query["endpointing"] == "300" and query["smart_format"] == "true"
        assert fake.connections[0]["headers"]["Authorization"] == f"Token {PROVIDER_KEY}"
    finally:
        fake.stop()


# -- Cartesia TTS over its websocket protocol ---------------------------------------------------------------------


async def test_cartesia_speaks_through_the_pinned_websocket(context) -> None:
    fake = start_fake_cartesia(ttfb_ms=120, api_key=PROVIDER_KEY)
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    # cartesia.test exists only in this resolver: audio arriving proves the connection used the checked address.
    context.shared[OUTBOUND_POLICY] = OutboundPolicy(["127.0.0.1/32"], resolver=resolver)
    try:
        base_url = fake.url.replace("127.0.0.1", "cartesia.test")
        tts = cartesia_tts(_stage(TtsStage, provider="cartesia", baseUrl=base_url, voice="voice-1",
                                  model="sonic-fake", options={"speed": "0.2"}), context)
        text = "Your table for four is booked for seven tonight."
        down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame(text), SleepFrame(sleep=1.5)],
                                  pipeline_params=METRICS)
        audio = [frame for frame in down if isinstance(frame, TTSAudioRawFrame)]
        assert audio and {frame.sample_rate for frame in audio} == {24000}
        spoken = [r["transcript"] for r in fake.requests if r.get("transcript")]
        assert " ".join(spoken).split() == text.split()
        received = sum(len(frame.audio) for frame in audio)
        assert received == sum(fake.audio_bytes.values())
        assert 1.5 < received / 2 / 24000 < 5, "about as long as eSpeak takes to say the sentence"
        request = next(r for r in fake.requests if r.get("transcript"))
        assert request["voice"] == {"mode": "id", "id": "voice-1"} and request["model_id"] == "sonic-fake"
        assert request["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}
        assert request["generation_config"]["speed"] == 0.2
        assert fake.connections[0]["headers"]["X-API-Key"] == PROVIDER_KEY
        assert fake.connections[0]["headers"]["Host"] == f"cartesia.test:{fake.url.rsplit(':', 1)[1]}"
        assert lookups and set(lookups) == {"cartesia.test"}
        ttfbs = _ttfb(down, "PinnedCartesiaTTSService")
        assert ttfbs and min(ttfbs) >= 0.11, ttfbs
        assert not [frame for frame in up if isinstance(frame, ErrorFrame)]
    finally:
        fake.stop()


async def test_a_base_url_resolving_to_a_private_address_is_refused_at_connect(context) -> None:
    fake = start_fake_cartesia()

    async def resolver(host: str, port: int) -> list[str]:
        return ["10.0.0.8"]

    context.shared[OUTBOUND_POLICY] = OutboundPolicy(["127.0.0.1/32"], resolver=resolver)
    try:
        tts = cartesia_tts(_stage(TtsStage, provider="cartesia", baseUrl="http://tts.internal.test:8080",
                                  voice="v"), context)
        _, up = await run_test(tts, frames_to_send=[TTSSpeakFrame("Hello."), SleepFrame(sleep=0.3)])
        errors = [frame.error for frame in up if isinstance(frame, ErrorFrame)]
        assert any("tts.internal.test resolves to a refused address (10.0.0.8 is a private address)" in e
                   for e in errors), errors
        assert fake.connections == []
    finally:
        fake.stop()


# -- building: checks, keys and options ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "provider", "table"), [
    (SttStage, "deepgram", CLOUD_STT), (SttStage, "openai", CLOUD_STT), (LlmStage, "openai", CLOUD_LLM),
    (LlmStage, "anthropic", CLOUD_LLM), (TtsStage, "cartesia", CLOUD_TTS), (TtsStage, "elevenlabs", CLOUD_TTS),
    (TtsStage, "openai", CLOUD_TTS)])
def test_base_urls_aimed_at_private_or_metadata_addresses_are_refused_when_built(context, kind, provider,
                                                                                 table) -> None:
    for url, reason in (("http://169.254.169.254/v1", "metadata"), ("http://10.0.0.1:8000/v1", "private"),
                        ("http://[::ffff:192.168.1.1]/", "192.168.1.1"), ("http://user:pw@api.example.com/",
                                                                          "credentials")):
        with pytest.raises(OutboundURLRefused, match=reason):
            table[provider](_stage(kind, provider=provider, baseUrl=url, voice="v"), context)


@pytest.mark.parametrize(("kind", "provider", "table", "service"), [
    (SttStage, "deepgram", CLOUD_STT, "CheckedDeepgramSTTService"),
    (SttStage, "openai", CLOUD_STT, "OpenAISTTService"), (LlmStage, "openai", CLOUD_LLM, "OpenAILLMService"),
    (LlmStage, "anthropic", CLOUD_LLM, "AnthropicLLMService"),
    (TtsStage, "cartesia", CLOUD_TTS, "PinnedCartesiaTTSService"),
    (TtsStage, "elevenlabs", CLOUD_TTS, "PinnedElevenLabsTTSService"),
    (TtsStage, "openai", CLOUD_TTS, "OpenAITTSService")])
def test_every_cloud_provider_builds_from_its_stage(context, kind, provider, table, service) -> None:
    built = table[provider](_stage(kind, provider=provider, voice="v", model="m"), context)
    assert type(built).__name__ == service
    assert PROVIDER_KEY not in repr(built)


def test_unknown_or_malformed_options_are_refused(context) -> None:
    with pytest.raises(ValueError, match="unknown option.*'temprature'"):
        openai_llm(_stage(LlmStage, provider="openai", options={"temprature": "0.5"}), context)
    with pytest.raises(ValueError, match="between 0.0 and 2.0"):
        openai_llm(_stage(LlmStage, provider="openai", options={"temperature": "9"}), context)
    with pytest.raises(ValueError, match="voice id"):
        cartesia_tts(_stage(TtsStage, provider="cartesia"), context)


def test_a_missing_secret_names_the_secret_not_a_value(context, monkeypatch) -> None:
    monkeypatch.delenv(secret_env_name(KEY_REF))
    with pytest.raises(RuntimeError, match="Secret 'provider-keys' key 'api-key' is not available"):
        deepgram_stt(_stage(SttStage, provider="deepgram"), context)


async def test_the_fake_provider_bundle_is_a_valid_pipeline_for_the_registry(monkeypatch) -> None:
    from tests.fakes.providers import start_fake_providers
    from voxfleet.worker.providers.registry import build_llm, build_stt, build_tts, load_providers

    fakes = start_fake_providers(llm_ttft_ms=50)
    try:
        for name, value in fakes.secret_env().items():
            monkeypatch.setenv(name, value)
        spec = VoiceAgentSpec.model_validate({"regions": [{"name": "local"}], "pipeline": fakes.pipeline_spec()})
        context = ProviderContext(config=WorkerConfig(tenant="acme", agent="bench", namespace="acme", spec=spec),
                                  settings=WorkerSettings(),
                                  platform=PlatformSettings(outbound_allowed_cidrs=["127.0.0.1/32"]))
        load_providers()
        built = [type(build(context)).__name__ for build in (build_stt, build_llm, build_tts)]
        assert built == ["CheckedDeepgramSTTService", "PinnedOpenAILLMService", "PinnedCartesiaTTSService"]
        await aclose_cloud_clients(context)
    finally:
        fakes.stop()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_llm_base_urls_are_checked_on_every_connection(context, provider: str) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["10.0.0.9"]

    context.shared[OUTBOUND_POLICY] = OutboundPolicy(["127.0.0.1/32"], resolver=resolver)
    llm = CLOUD_LLM[provider](_stage(LlmStage, provider=provider, baseUrl="http://llm.internal.test:8000/v1"),
                              context)
    pair = LLMContextAggregatorPair(LLMContext(messages=[{"role": "user", "content": "hi"}]))
    with structlog.testing.capture_logs() as logs:
        _, up = await run_test(Pipeline([pair.user(), llm, pair.assistant()]),
                               frames_to_send=[LLMRunFrame(), SleepFrame(sleep=0.5)])
    assert [frame for frame in up if isinstance(frame, ErrorFrame)]
    refusals = [entry for entry in logs if entry["event"] == "outbound connection refused"]
    assert refusals and refusals[0]["reason"] == ("llm.internal.test resolves to a refused address"
                                                  " (10.0.0.9 is a private address)")
    assert PROVIDER_KEY not in repr(logs)
