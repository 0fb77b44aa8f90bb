"""The worker's Prometheus metrics, labelled tenant/agent/region (one registry per process, served on /metrics).

docs/operations.md says what each one means; the turn outcomes and false interruptions are defined there and
judged in conversation_observer.py / turn_outcomes.py.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voxfleet.api.wire import EndReason
from voxfleet.telemetry.build_info import register_standard_metrics
from voxfleet.worker.telemetry.turn_outcomes import TURN_OUTCOMES

REGISTRY = CollectorRegistry(auto_describe=True)
register_standard_metrics(REGISTRY, "worker")
LABELS = ("tenant", "agent", "region")
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


def _histogram(name: str, doc: str, buckets=LATENCY_BUCKETS, extra: tuple[str, ...] = ()) -> Histogram:
    return Histogram(name, doc, LABELS + extra, buckets=buckets, registry=REGISTRY)


def _counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, LABELS + extra, registry=REGISTRY)


TTFA = _histogram("voxfleet_worker_ttfa_seconds",
                  "Caller's last voiced audio received -> agent's first audio frame sent to the room.")
STT_FINAL_LATENCY = _histogram("voxfleet_worker_stt_final_latency_seconds",
                               "End of the caller's speech -> final transcript.")
LLM_TTFT = _histogram("voxfleet_worker_llm_ttft_seconds", "LLM request -> first token (or tool call).")
TTS_TTFB = _histogram("voxfleet_worker_tts_ttfb_seconds", "TTS request -> first audio.")
TURN_DETECTION = _histogram("voxfleet_worker_turn_detection_seconds",
                            "Caller's last voiced audio -> end of turn decided (VAD stop window + detector).")
TOOL_CALL = _histogram("voxfleet_worker_tool_call_seconds", "HTTP tool call duration.", extra=("tool",))
TURNS = _counter("voxfleet_worker_turns_total", "Caller turns ended (the agent is to answer each).")
TURN_OUTCOME = _counter("voxfleet_worker_turn_outcomes_total",
                        "Caller turns with words, judged once the next turn or the call's end tells: answered"
                        " (success), repeated, hung_up or unanswered.", extra=("outcome",))
INTERRUPTIONS = _counter("voxfleet_worker_interruptions_total",
                         "Times the caller barged in on the agent (its audio paused for the caller's voice).")
FALSE_INTERRUPTIONS = _counter("voxfleet_worker_false_interruptions_total",
                               "Barge-ins in which the caller said no words (the agent paused for noise, then"
                               " resumed its reply).")
BACKCHANNELS = _counter("voxfleet_worker_backchannels_total",
                        "Barge-ins in which the caller said only backchannels (\"mhm\", \"okay\"): the agent resumed.")
SESSIONS = _counter("voxfleet_worker_sessions_total", "Sessions ended, by how they ended.", extra=("end_reason",))
SESSION_DURATION = _histogram("voxfleet_worker_session_duration_seconds", "Session duration.",
                              buckets=DURATION_BUCKETS)
STT_SECONDS = _counter("voxfleet_worker_stt_audio_seconds_total", "Audio seconds sent to STT.")
LLM_INPUT_TOKENS = _counter("voxfleet_worker_llm_input_tokens_total", "LLM input (prompt) tokens.")
LLM_OUTPUT_TOKENS = _counter("voxfleet_worker_llm_output_tokens_total", "LLM output (completion) tokens.")
TTS_CHARACTERS = _counter("voxfleet_worker_tts_characters_total", "Characters sent to TTS.")
COST = _counter("voxfleet_worker_cost_total", "Provider cost from the platform's price table.")
ACTIVE = Gauge("voxfleet_worker_sessions_active", "Sessions in progress.", LABELS, registry=REGISTRY)
CAPACITY = Gauge("voxfleet_worker_capacity_sessions", "Slots (sessionsPerWorker).", LABELS, registry=REGISTRY)
READY = Gauge("voxfleet_worker_ready", "1 once models are loaded and the worker takes sessions.", LABELS,
              registry=REGISTRY)
STARTUP = Gauge("voxfleet_worker_startup_seconds", "Process start -> ready.", LABELS, registry=REGISTRY)
DRAINS = _counter("voxfleet_worker_drains_total",
                  "Times this worker stopped taking calls to finish its live ones and exit: signal (SIGTERM),"
                  " request (POST /v1/drain) or memory (resident memory past its recycle limit).",
                  extra=("reason",))
MEMORY_RECYCLE_LIMIT = Gauge("voxfleet_worker_memory_recycle_bytes",
                             "Resident memory past which the worker recycles (0: no limit); compare with"
                             " process_resident_memory_bytes.", LABELS, registry=REGISTRY)


def start_series(labels: dict[str, str]) -> None:
    """Create this worker's labelled series at 0 before anything happens, so Prometheus sees every counter and
    histogram from its first scrape: a rate() then counts the first event too, and a dashboard or alert reads 0
    instead of "no data" for an agent that simply had no calls yet."""
    for metric in (TTFA, STT_FINAL_LATENCY, LLM_TTFT, TTS_TTFB, TURN_DETECTION, TURNS, INTERRUPTIONS,
                   FALSE_INTERRUPTIONS, BACKCHANNELS, SESSION_DURATION, STT_SECONDS, LLM_INPUT_TOKENS,
                   LLM_OUTPUT_TOKENS, TTS_CHARACTERS, COST, ACTIVE):
        metric.labels(**labels)
    for outcome in TURN_OUTCOMES:
        TURN_OUTCOME.labels(**labels, outcome=outcome)
    for reason in get_args(EndReason):
        SESSIONS.labels(**labels, end_reason=reason)
    for reason in ("signal", "request", "memory"):
        DRAINS.labels(**labels, reason=reason)
