"""What a worker keeps of an eval-mode session and the gateway hands back to the tenant's eval runner.

Only sessions dispatched with `DispatchRequest.eval_mode` of agents whose spec records transcripts
(`spec.observability.recordTranscripts`) are recorded; everything is bounded. Times are Unix epoch seconds of
the worker's clock, so a runner can place each line and tool call in the turn it belongs to.

    worker   GET /v1/sessions/{id}/eval   (platform worker token)
    gateway  GET /v1/sessions/{id}/eval   (tenant API key; 404 not_an_eval_session, 403 transcripts_disabled)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from voxfleet.api.model_base import ApiModel

MAX_EVAL_LINES = 500
MAX_EVAL_TOOL_CALLS = 100
MAX_EVAL_TEXT_CHARS = 1000

ToolOutcome = Literal["running", "ok", "error", "cancelled"]


class EvalTranscriptLine(ApiModel):
    role: Literal["caller", "agent"] = Field(description="caller: what speech-to-text heard; agent: what it said.")
    text: str = Field(max_length=MAX_EVAL_TEXT_CHARS)
    at: float = Field(description="When the line was heard or spoken (epoch seconds, worker clock).")


class EvalToolCall(ApiModel):
    name: str = Field(max_length=64)
    call_id: str = Field(max_length=128)
    arguments: dict[str, Any] = Field(default_factory=dict, description="The arguments the LLM called it with.")
    outcome: ToolOutcome = Field(default="running", description="ok, error (with `error`), cancelled, running.")
    error: str | None = Field(default=None, max_length=300, description="Why the call failed (never a secret).")
    started_at: float = Field(description="Epoch seconds (worker clock).")
    ended_at: float | None = Field(default=None, description="Epoch seconds; none while running.")


class EvalLatency(ApiModel):
    at: float = Field(description="When the agent's answer started (epoch seconds, worker clock).")
    seconds: float = Field(description="The worker's own TTFA of that answer (as its TTFA histogram records it).")


class SessionEvalRecord(ApiModel):
    session_id: str
    complete: bool = Field(default=False, description="The session has ended: nothing more will be added.")
    truncated: bool = Field(default=False, description="Bounds were reached; later lines or calls were dropped.")
    transcript: list[EvalTranscriptLine] = Field(default_factory=list, max_length=MAX_EVAL_LINES)
    tool_calls: list[EvalToolCall] = Field(default_factory=list, max_length=MAX_EVAL_TOOL_CALLS)
    interruptions: list[float] = Field(default_factory=list, max_length=MAX_EVAL_LINES,
                                       description="When the agent stopped speaking for a barge-in (epoch s).")
    agent_ttfa: list[EvalLatency] = Field(default_factory=list, max_length=MAX_EVAL_LINES,
                                          description="Each answer's TTFA as the worker measured it (without the"
                                                      " network legs a caller hears on top).")
