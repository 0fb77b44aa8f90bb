"""One session's Pipecat pipeline, assembled in one place from the agent's spec:

    LiveKit input (16 kHz, 32 ms frames) -> STT -> user aggregator (shared Silero VAD, smart-turn v3 or
    speech-timeout, barge-in as pause-then-decide, mute only during non-interruptible tools) -> [caller audio
    stops here] -> LLM with tools -> TTS -> LiveKit output -> assistant aggregator

Everything per-process (ONNX sessions, decoders, provider registry) is passed in; only light per-stream state
is created here, so building a session costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipecat.audio.turn.smart_turn.base_smart_turn import SmartTurnParams
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.transports.livekit.transport import LiveKitParams
from pipecat.turns.user_start import (
    MinWordsUserTurnStartStrategy,
    TranscriptionUserTurnStartStrategy,
    VADUserTurnStartStrategy,
)
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy, TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.api.wire import DispatchRequest
from voxfleet.telemetry import resource_attributes
from voxfleet.worker.backchannels import Backchannels
from voxfleet.worker.barge_in import BargeInOutcome, PausableOutput, PauseThenDecideStrategy
from voxfleet.worker.call_report import ToolCallTimes
from voxfleet.worker.eval_record import recorder_for
from voxfleet.worker.input_audio_stop import InputAudioStop
from voxfleet.worker.livekit_input import INPUT_SAMPLE_RATE, FramedLiveKitTransport
from voxfleet.worker.livekit_output import WRITE_TIMEOUT_S
from voxfleet.worker.providers.registry import ProviderContext, build_llm, build_stt, build_tts
from voxfleet.worker.reply_filler import ReplyFillerProcessor
from voxfleet.worker.room_transcripts import RoomTranscriptPublisher
from voxfleet.worker.shared_models import SharedModels, SharedSileroVAD
from voxfleet.worker.telemetry.conversation_observer import ConversationObserver
from voxfleet.worker.tool_calls import ToolRunnerLike, register_tools, tools_schema
from voxfleet.worker.tool_ledger import ToolLedger
from voxfleet.worker.tool_mute_strategy import NonInterruptibleToolMuteStrategy

OUTPUT_SAMPLE_RATE = 24000
CANCEL_FRAME_TIMEOUT_S = 3.0


@dataclass
class SessionPipeline:
    worker: PipelineWorker
    transport: FramedLiveKitTransport
    vad: SharedSileroVAD
    observer: ConversationObserver
    context: LLMContext
    services: dict[str, Any] = field(default_factory=dict)
    tool_calls: ToolCallTimes = field(default_factory=ToolCallTimes)  # for the end-of-call report


def user_turn_strategies(spec: VoiceAgentSpec, models: SharedModels, *, output: PausableOutput,
                         on_barge_in: Callable[[BargeInOutcome], None]) -> UserTurnStrategies:
    interruptions = spec.interruptions
    if interruptions.enabled:  # pause, then decide (worker/barge_in.py)
        start = [PauseThenDecideStrategy(
            output=output, min_words=interruptions.min_words, on_outcome=on_barge_in,
            backchannels=Backchannels.for_agent(interruptions.backchannels, spec.pipeline.stt.language),
            false_interruption_timeout_s=interruptions.false_interruption_timeout_ms / 1000)]
    elif interruptions.min_words > 0:
        start = [MinWordsUserTurnStartStrategy(min_words=interruptions.min_words, enable_interruptions=False)]
    else:
        start = [VADUserTurnStartStrategy(enable_interruptions=False),
                 TranscriptionUserTurnStartStrategy(enable_interruptions=False)]
    timeouts = spec.turn_detection.timeouts
    if spec.turn_detection.detector == "smart-turn":
        stop = [TurnAnalyzerUserTurnStopStrategy(
            turn_analyzer=models.smart_turn(SmartTurnParams(stop_secs=timeouts.max_turn_wait_ms / 1000)))]
    else:
        stop = [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=timeouts.speech_timeout_ms / 1000)]
    return UserTurnStrategies(start=start, stop=stop)


def build_session_pipeline(request: DispatchRequest, *, providers: ProviderContext, models: SharedModels,
                           tool_runner: ToolRunnerLike, labels: dict[str, str], tracing: bool,
                           ledger: ToolLedger | None = None) -> SessionPipeline:
    """`ledger`: the session's tool-call record (numbers, Idempotency-Keys, what a recovered call must not redo)."""
    spec = providers.config.spec
    settings = providers.settings
    vad_spec = spec.turn_detection.vad
    # The spec's integer milliseconds and percent (docs/api-conventions.md) as the seconds and fractions Pipecat takes.
    vad = models.vad(VADParams(confidence=vad_spec.confidence_percent / 100, start_secs=vad_spec.start_ms / 1000,
                               stop_secs=vad_spec.stop_ms / 1000, min_volume=vad_spec.min_volume_percent / 100))

    transport = FramedLiveKitTransport(
        request.livekit_url, request.livekit_token, request.room,
        LiveKitParams(audio_in_enabled=True, audio_out_enabled=True, audio_in_sample_rate=INPUT_SAMPLE_RATE,
                      audio_out_sample_rate=OUTPUT_SAMPLE_RATE, audio_out_queue_size_ms=settings.audio_out_queue_ms,
                      audio_out_write_timeout_secs=WRITE_TIMEOUT_S),  # above a barge-in pause's limit
        frame_size_ms=settings.input_frame_ms)

    mute = [NonInterruptibleToolMuteStrategy({tool.name for tool in spec.tools if not tool.interruptible})]
    messages = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
    schema = tools_schema(spec.tools)
    context = LLMContext(messages=messages, tools=schema) if schema else LLMContext(messages=messages)
    stt, llm, tts = build_stt(providers), build_llm(providers), build_tts(providers)

    observer = ConversationObserver(labels=labels, vad=vad, stt_name=stt.name, llm_name=llm.name,
                                    tts_name=tts.name, record_transcripts=spec.observability.record_transcripts)
    strategies = user_turn_strategies(spec, models, output=transport.output(), on_barge_in=observer.count_barge_in)
    aggregators = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(
        vad_analyzer=vad, user_turn_strategies=strategies, user_mute_strategies=mute))
    tool_calls = ToolCallTimes()
    pipeline = Pipeline([transport.input(), stt, aggregators.user(), InputAudioStop(), llm,
                         ReplyFillerProcessor(spec.reply_filler, session_id=request.session_id), tts,
                         transport.output(), aggregators.assistant()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=INPUT_SAMPLE_RATE, audio_out_sample_rate=OUTPUT_SAMPLE_RATE,
                              enable_metrics=True, enable_usage_metrics=True),
        observers=[observer, tool_calls,
                   *filter(None, [recorder_for(request, spec, observer)])],  # eval mode: voxfleet eval
        name=f"session-{request.session_id}",
        conversation_id=request.session_id,
        enable_tracing=tracing,
        enable_turn_tracking=tracing,  # its observer sees every frame; only tracing reads it
        additional_span_attributes={resource_attributes.TENANT: labels["tenant"],
                                    resource_attributes.AGENT: labels["agent"],
                                    resource_attributes.REGION: labels["region"]},
        enable_rtvi=False,
        idle_timeout_secs=spec.limits.idle_timeout_seconds,
        cancel_on_idle_timeout=False,  # the session ends itself, with end reason "idle"
        cancel_runner_on_idle_timeout=False,
        setup_timeout_secs=settings.room_join_timeout_seconds,
        # A cancelled call has nothing left to play: if a processor holds the CancelFrame, stop waiting after a
        # few seconds (Pipecat's 20 s default kept an ended call's slot taken and its session "active").
        cancel_timeout_secs=CANCEL_FRAME_TIMEOUT_S,
        check_dangling_tasks=False)
    turns = worker.turn_trace_observer  # Pipecat's turn tracing: there when spans are exported
    if turns is not None:
        # Pipecat would open the conversation span when the StartFrame passes its observer, in whatever context
        # that observer's task runs; opened here, it is a child of the current span (the session's, which
        # continues the gateway's trace), so the turns and the STT/LLM/TTS spans under it join the call's trace.
        turns.start_conversation_tracing(request.session_id)
        register_tools(llm, spec.tools, tool_runner, turn_context=turns.get_current_turn_context, ledger=ledger)
    else:
        register_tools(llm, spec.tools, tool_runner, ledger=ledger)
    services = {"stt": stt, "llm": llm, "tts": tts, "aggregators": aggregators}
    if spec.observability.record_transcripts:  # off: no text of the call leaves the pipeline
        services["transcripts"] = RoomTranscriptPublisher(transport, aggregators)
    return SessionPipeline(worker=worker, transport=transport, vad=vad, observer=observer, context=context,
                           services=services, tool_calls=tool_calls)


def close_conversation_trace(pipeline: SessionPipeline) -> None:
    """Ends the conversation span (and a turn still open) if Pipecat has not: it does so only when the pipeline
    ran, and a call can end while it is being built or joining its room. A second call does nothing."""
    observer = pipeline.worker.turn_trace_observer
    if observer is not None:
        observer.end_conversation_tracing()
