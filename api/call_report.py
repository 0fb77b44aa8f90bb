"""The end-of-call report: what a call was, as the tenant reads it in its history and in `session.ended`.

Two models, because two parties speak and only one is trusted with the record:

- `WorkerCallReport` is what a worker knows of a session it ran (its turns and their TTFA, interruptions, tool
  calls, provider usage, the transcript when the agent records transcripts). The gateway fetches it from the
  worker it dispatched the session to (`GET /v1/sessions/{id}/report` on the worker control API, worker token);
  it carries no tenant, no agent, no price and no cost: a worker may be made to do anything its spec allows, so
  nothing it says may choose whose record it lands in or what the call costs.
- `CallReport` is what the gateway stores (`sessions.report`, `sessions.transcript`) and serves: the worker's
  figures, checked against bounds and the gateway's own facts (tenant, agent, region, worker, start time; the
  duration is the gateway's), priced by the platform's price list (voxfleet.gateway.pricing). A session whose
  worker died without reporting still gets one, built from the gateway's facts alone (`source: gateway`, end
  reason `worker-lost`).

Times inside a call (`atMs`) are milliseconds since the session started on the worker that reported it.
Everything is bounded; `truncated` says a bound was reached and later items were dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from voxfleet.api.model_base import ApiModel

MAX_REPORT_TURNS = 2000  # a 4-hour call (maxSessionSeconds' ceiling) with a turn every 7 s
MAX_REPORT_TOOL_CALLS = 200
MAX_REPORT_RECOVERIES = 20
MAX_TRANSCRIPT_LINES = 500
MAX_TRANSCRIPT_TEXT_CHARS = 1000
# The most a worker's report may weigh on the wire; the gateway refuses (and does not read past) a larger body.
MAX_REPORT_BYTES = 1024 * 1024

# Provider usage ceilings: far above what any call can use (a 4-hour call is 14.4 M ms), low enough that a
# forged figure cannot overflow a bigint cost or a day's usage sum.
MAX_USAGE_MS = 24 * 3600 * 1000
MAX_USAGE_TOKENS = 1_000_000_000
MAX_USAGE_CHARACTERS = 100_000_000
MAX_LATENCY_MS = 24 * 3600 * 1000

TurnOutcome = Literal["answered", "repeated", "hung_up", "unanswered"]  # worker/telemetry/turn_outcomes.py
ToolCallStatus = Literal["ok", "error", "cancelled", "unfinished"]
# voxfleet.api.wire.EndReason, plus the one only the gateway gives: the worker died and never reported.
ReportEndReason = Literal["caller-left", "max-duration", "idle", "deleted", "error", "drained", "room-finished",
                          "worker-lost"]
RecoveryOutcome = Literal["same_region", "other_region", "restarted_worker", "gave_up"]
ReportSource = Literal["worker", "gateway"]


class CallUsage(ApiModel):
    """Provider usage of one call, in the units providers bill by. Counted by the worker from what the providers
    report (Pipecat usage metrics); an offline provider that bills nothing reports what it did all the same
    (tokens it was given and produced, characters it spoke), so the figures stay comparable."""

    stt_ms: int = Field(default=0, ge=0, le=MAX_USAGE_MS, description="Caller audio sent to speech-to-text (ms).")
    llm_prompt_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS, description="LLM prompt (input) tokens.")
    llm_completion_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS,
                                       description="LLM completion (output) tokens.")
    tts_characters: int = Field(default=0, ge=0, le=MAX_USAGE_CHARACTERS,
                                description="Characters sent to text-to-speech.")


class ReportTurn(ApiModel):
    """One caller turn: the caller spoke and stopped for the agent to answer."""

    index: int = Field(ge=0, lt=MAX_REPORT_TURNS, description="0 for the call's first caller turn.")
    at_ms: int = Field(ge=0, le=MAX_USAGE_MS, description="When the caller's turn ended (ms since the start).")
    ttfa_ms: int | None = Field(default=None, ge=0, le=MAX_LATENCY_MS,
                                description="Time to first audio of the agent's answer, from the end of the"
                                            " caller's voiced audio to the answer's first audio frame leaving the"
                                            " worker; none when the agent did not answer this turn.")
    interrupted: bool = Field(default=False, description="The caller barged in while the agent answered it.")
    outcome: TurnOutcome | None = Field(default=None, description="answered, repeated, hung_up or unanswered"
                                                                  " (docs/operations.md: turn success).")


class ReportToolCall(ApiModel):
    name: str = Field(min_length=1, max_length=64)
    status: ToolCallStatus = Field(description="ok, error, cancelled, or unfinished (the call ended first).")
    latency_ms: int | None = Field(default=None, ge=0, le=MAX_LATENCY_MS,
                                   description="From the LLM's call to the tool's result; none when unfinished.")


class ReportRecovery(ApiModel):
    """The call lost its worker and another one took it over (docs/resilience.md)."""

    at: datetime = Field(description="When the new worker took the call (RFC 3339).")
    outcome: RecoveryOutcome = Field(description="same_region, other_region, restarted_worker, or gave_up.")
    from_worker: str | None = Field(default=None, max_length=253, description="The lost worker's pod, if known.")
    to_worker: str | None = Field(default=None, max_length=253, description="The pod that continued the call.")


class TranscriptLine(ApiModel):
    role: Literal["caller", "agent"] = Field(description="caller: what speech-to-text heard; agent: what it said.")
    text: str = Field(max_length=MAX_TRANSCRIPT_TEXT_CHARS)
    at_ms: int = Field(ge=0, le=MAX_USAGE_MS, description="When the line was heard or spoken (ms since start).")


class WorkerCallReport(ApiModel):
    """Worker -> gateway: what the worker that ran the session knows of it. No tenant, agent or cost (see the
    module docstring); the gateway answers for those."""

    session_id: str = Field(min_length=8, max_length=200)
    worker: str = Field(min_length=1, max_length=253, description="The reporting pod's name.")
    complete: bool = Field(description="The session has ended on this worker: the report is final.")
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: ReportEndReason | None = None
    recovered: bool = Field(default=False, description="This worker took the call over from a lost one.")
    turns: list[ReportTurn] = Field(default_factory=list, max_length=MAX_REPORT_TURNS)
    interruptions: int = Field(default=0, ge=0, le=MAX_REPORT_TURNS * 10)
    false_interruptions: int = Field(default=0, ge=0, le=MAX_REPORT_TURNS * 10)
    tool_calls: list[ReportToolCall] = Field(default_factory=list, max_length=MAX_REPORT_TOOL_CALLS)
    usage: CallUsage = Field(default_factory=CallUsage)
    transcript: list[TranscriptLine] | None = Field(default=None, max_length=MAX_TRANSCRIPT_LINES,
                                                    description="Only when the agent records transcripts.")
    truncated: bool = False


class CallReport(ApiModel):
    """The end-of-call report the tenant reads (`GET /v1/sessions/{id}`) and receives (`session.ended`)."""

    session_id: str
    agent: str
    region: str
    worker: str | None = Field(default=None, description="The pod that ran (or last ran) the call.")
    channel: str = Field(default="web", description="How the caller joined: web (LiveKit room) today.")
    started_at: datetime
    ended_at: datetime
    duration_ms: int = Field(ge=0, description="ended_at - started_at, as the gateway saw them.")
    end_reason: ReportEndReason
    source: ReportSource = Field(default="worker", description="worker: the figures are the worker's report;"
                                                               " gateway: it never reported (worker-lost), the"
                                                               " report holds only what the gateway knew.")
    turns: list[ReportTurn] = Field(default_factory=list, max_length=MAX_REPORT_TURNS)
    interruptions: int = Field(default=0, ge=0)
    false_interruptions: int = Field(default=0, ge=0)
    tool_calls: list[ReportToolCall] = Field(default_factory=list, max_length=MAX_REPORT_TOOL_CALLS)
    usage: CallUsage = Field(default_factory=CallUsage)
    cost_micros: int = Field(default=0, ge=0, description="What the call costs, in millionths of `currency`,"
                                                          " from the platform's price list (never the worker's).")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code of cost_micros.")
    recoveries: list[ReportRecovery] = Field(default_factory=list, max_length=MAX_REPORT_RECOVERIES)
    transcript: list[TranscriptLine] | None = Field(default=None, max_length=MAX_TRANSCRIPT_LINES,
                                                    description="Only when the agent records transcripts; stored"
                                                                " apart from the report (sessions.transcript).")
    truncated: bool = Field(default=False, description="A bound was reached; later turns or lines were dropped.")
