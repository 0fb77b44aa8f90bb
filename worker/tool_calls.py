"""The spec's HTTP tools as LLM functions: schemas for the context, handlers that run them through the ToolRunner.

The ToolRunner (voxfleet.worker.tools) validates, times out, adds secret headers, keeps non-idempotent calls
at most once and turns any outcome into something speakable. Here we only connect it to Pipecat:
`register_function(cancel_on_interruption=tool.interruptible, timeout_secs=...)`, and the filler phrase when
a call runs longer than `filler.afterMs`, so the caller never hears dead air. With the session's ToolLedger
(voxfleet.worker.tool_ledger) each call is numbered (its Idempotency-Key) and recorded in the call's checkpoint,
and a repeat of a non-idempotent call made before a recovery is answered from the record instead of being sent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.services.llm_service import FunctionCallParams, LLMService

from voxfleet.api.voiceagent import Tool
from voxfleet.worker.tool_ledger import ToolLedger, argument_fingerprint

TIMEOUT_MARGIN_S = 1.0  # the runner times out first and apologises; Pipecat's timeout is only the backstop
TRACER = trace.get_tracer("voxfleet.worker")
TurnContext = Callable[[], SpanContext | None]


class ToolRunnerLike(Protocol):
    async def run(self, tool: Tool, arguments: Any, *, call_id: str, on_slow: Any = None, scope: str = "",
                  idempotency_key: str | None = None) -> Any: ...


def tools_schema(tools: list[Tool]) -> ToolsSchema | None:
    if not tools:
        return None
    return ToolsSchema(standard_tools=[
        FunctionSchema(name=tool.name, description=tool.description,
                       properties=dict(tool.parameters.get("properties", {})),
                       required=list(tool.parameters.get("required", [])))
        for tool in tools])


def result_payload(outcome: Any) -> dict[str, Any]:
    """What goes back into the LLM context: what to say first (`speech`), then the tool's own answer."""
    payload: dict[str, Any] = {"speech": outcome.speakable, "ok": outcome.ok}
    if outcome.ok:
        payload["result"] = outcome.result
    elif outcome.error:
        payload["error"] = outcome.error
    return payload


def register_tools(llm: LLMService, tools: list[Tool], runner: ToolRunnerLike,
                   turn_context: TurnContext = lambda: None, ledger: ToolLedger | None = None) -> None:
    """`turn_context`: the span of the turn a call happens in (Pipecat's turn tracing), its tool spans' parent.
    `ledger`: the session's record of its tool calls (None: calls are neither numbered nor remembered)."""
    for tool in tools:
        llm.register_function(tool.name, _handler(tool, runner, turn_context, ledger),
                              cancel_on_interruption=tool.interruptible,
                              timeout_secs=tool.http.timeout_ms / 1000 + TIMEOUT_MARGIN_S)


def _handler(tool: Tool, runner: ToolRunnerLike, turn_context: TurnContext, ledger: ToolLedger | None
             ) -> Callable[[FunctionCallParams], Awaitable[None]]:
    async def run(params: FunctionCallParams) -> None:
        async def say_filler() -> None:
            await params.llm.push_frame(TTSSpeakFrame(tool.filler.say, append_to_context=False))

        # One span per call (OpenTelemetry's GenAI conventions): its arguments and result are call content, which
        # voxfleet.telemetry.tracing keeps in the worker unless the agent records transcripts.
        turn = turn_context()
        parent = trace.set_span_in_context(NonRecordingSpan(turn)) if turn is not None else None
        with TRACER.start_as_current_span(f"execute_tool {tool.name}", context=parent, kind=SpanKind.CLIENT,
                                          attributes={"gen_ai.operation.name": "execute_tool",
                                                      "gen_ai.tool.name": tool.name,
                                                      "gen_ai.tool.call.id": params.tool_call_id,
                                                      "gen_ai.tool.call.arguments": _json(params.arguments)}) as span:
            fingerprint = argument_fingerprint(params.arguments)
            recorded = ledger.replay(tool, fingerprint) if ledger is not None else None
            if recorded is not None:
                # Made before this session was recovered: never sent again (it may have happened).
                span.set_attributes({"voxfleet.tool.outcome": "replayed" if recorded.get("ok") else "unconfirmed",
                                     "gen_ai.tool.call.result": _json(recorded)})
                await params.result_callback(recorded)
                return
            record = await ledger.begin(tool, params.tool_call_id, fingerprint) if ledger is not None else None
            outcome = await runner.run(tool, dict(params.arguments), call_id=params.tool_call_id,
                                       on_slow=say_filler, scope=ledger.session_id if ledger else "",
                                       idempotency_key=ledger.idempotency_key(record) if record else None)
            payload = result_payload(outcome)
            if record is not None:
                ledger.finish(record, payload)
            span.set_attributes({"voxfleet.tool.outcome": getattr(outcome, "error", None) or "ok",
                                 "gen_ai.tool.call.result": _json(payload)})
            if getattr(outcome, "status", None) is not None:
                span.set_attribute("http.response.status_code", outcome.status)
        await params.result_callback(payload)

    return run


def _json(value: Any) -> str:
    try:
        return json.dumps(value, default=str)[:4096]
    except (TypeError, ValueError):
        return str(value)[:4096]
