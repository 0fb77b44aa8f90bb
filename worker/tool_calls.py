"""The spec's HTTP tools as LLM functions: schemas for the context, handlers that run them through the ToolRunner.

The ToolRunner (voxfleet.worker.tools) validates, times out, adds secret headers, keeps non-idempotent calls
at most once and turns any outcome into something speakable. Here we only connect it to Pipecat:
`register_function(cancel_on_interruption=tool.interruptible, timeout_secs=...)`, and the filler phrase when
a call runs longer than `filler.afterMs`, so the caller never hears dead air.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.services.llm_service import FunctionCallParams, LLMService

from voxfleet.api.voiceagent import Tool

TIMEOUT_MARGIN_S = 1.0  # the runner times out first and apologises; Pipecat's timeout is only the backstop


class ToolRunnerLike(Protocol):
    async def run(self, tool: Tool, arguments: Any, *, call_id: str, on_slow: Any = None) -> Any: ...


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


def register_tools(llm: LLMService, tools: list[Tool], runner: ToolRunnerLike) -> None:
    for tool in tools:
        llm.register_function(tool.name, _handler(tool, runner), cancel_on_interruption=tool.interruptible,
                              timeout_secs=tool.http.timeout_ms / 1000 + TIMEOUT_MARGIN_S)


def _handler(tool: Tool, runner: ToolRunnerLike) -> Callable[[FunctionCallParams], Awaitable[None]]:
    async def run(params: FunctionCallParams) -> None:
        async def say_filler() -> None:
            await params.llm.push_frame(TTSSpeakFrame(tool.filler.say, append_to_context=False))

        outcome = await runner.run(tool, dict(params.arguments), call_id=params.tool_call_id, on_slow=say_filler)
        await params.result_callback(result_payload(outcome))

    return run
