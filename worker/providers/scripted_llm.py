"""The deterministic `scripted` LLM: the agent's intents (keywords or RE2 patterns) decide the answer.

It behaves like a real streaming LLM so the rest of the pipeline cannot tell the difference: the reply goes
out token by token between LLMFullResponseStart/End frames, a tool call goes through Pipecat's
run_function_calls (FunctionCallsStarted/InProgress/Result frames, the registered handler, the aggregator
re-running inference with the result), and token usage is reported the way cloud services report it.

A turn it did not understand (no intent matched, or the match explains too little of what was heard: see
intent_matcher) gets the spec's noMatch.retry line; after noMatch.maxRetries such turns in a row, its
noMatch.handoff line. A correctable intent's slots can be corrected on the next turn ("no, I said 7302").
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    Frame,
    FunctionCallFromLLM,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
)
from pipecat.metrics.metrics import LLMTokenUsage
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings
from pipecat.utils.tracing.service_decorators import traced_llm

from voxfleet.api.voiceagent import Intent, NoMatch
from voxfleet.worker.providers.intent_matcher import IntentMatch, IntentMatcher, Turn, fill, fill_arguments

MAX_REPLY_CHARS = 2000
# Below this share of the heard words explained by the best match, the turn counts as not understood. Tuned on
# the caller corpus's tuning lines (bench/recognition_bench.py); the held-out figures are in worker/README.md.
MIN_COVERAGE = 0.5


class Understanding:
    """One call's reading of the caller's turns: the intent (or a correction of the last one), or None.

    Pure and synchronous, so the recognition benchmark judges exactly what the LLM service answers with.
    """

    def __init__(self, intents: list[Intent], *, min_coverage: float = MIN_COVERAGE):
        self._matcher = IntentMatcher(intents)
        self._min_coverage = min_coverage
        self._last: Turn | None = None

    def understand(self, heard: str) -> IntentMatch | None:
        match = self._matcher.match(heard) if heard else None
        if (match is None or match.coverage < self._min_coverage) and self._last is not None:
            match = self._matcher.correction(heard, self._last) or match
        if match is None or match.coverage < self._min_coverage:
            return None
        self._last = Turn(heard=match.said, match=match) if match.slots and match.intent.correctable else None
        return match


class InjectedFault(RuntimeError):
    """Raised on purpose (platform fault-injection setting only) to prove a session's crash stays contained."""


class ScriptedLLMService(LLMService):
    def __init__(self, intents: list[Intent], *, no_match: NoMatch | None = None, token_delay_s: float = 0.0,
                 fault_injection: bool = False, **kwargs):
        super().__init__(settings=LLMSettings(
            model="scripted", system_instruction=None, temperature=None, max_tokens=None, top_p=None, top_k=None,
            frequency_penalty=None, presence_penalty=None, seed=None, filter_incomplete_user_turns=False,
            user_turn_completion_config=None), **kwargs)
        self._understanding = Understanding(intents)
        self._no_match = no_match or NoMatch()
        self._not_understood = 0  # turns in a row
        self._token_delay_s = token_delay_s
        self._fault_injection = fault_injection
        self._pending_tools: dict[str, IntentMatch] = {}  # tool_call_id -> the intent waiting for the result
        self._hang_on_cancel = False  # fault injection: act like a client stuck closing its connection

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, CancelFrame) and self._hang_on_cancel:
            await asyncio.Event().wait()  # holds the CancelFrame until the worker stops waiting for it
        if isinstance(frame, LLMContextFrame):
            await self.push_frame(LLMFullResponseStartFrame())
            await self.start_processing_metrics()
            try:
                await self._respond(frame.context)
            finally:
                await self.stop_processing_metrics()
                await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    @traced_llm  # an llm span per answer, as Pipecat's cloud LLMs make (messages and output only when recorded)
    async def _respond(self, context: LLMContext) -> None:
        await self.start_ttfb_metrics()
        messages = context.get_messages()
        last = messages[-1] if messages else {}
        if last.get("role") == "tool" and last.get("tool_call_id") in self._pending_tools:
            match = self._pending_tools.pop(last["tool_call_id"])
            slots = {**match.slots, "result": speakable_result(last.get("content"))}
            await self._say(fill(match.intent.reply or "{result}", slots), messages)
            return
        heard = last_user_text(messages)
        match = self._understanding.understand(heard)
        if match is None:
            self._not_understood += 1
            handoff = self._not_understood > self._no_match.max_retries
            await self._say(self._no_match.handoff if handoff else self._no_match.retry, messages)
            return
        self._not_understood = 0
        if self._fault_injection and match.intent.name.startswith("crash"):
            raise InjectedFault(f"intent {match.intent.name!r} crashes this session on purpose")
        if self._fault_injection and match.intent.name.startswith("hang"):
            self._hang_on_cancel = True
        call = match.intent.tool_call
        if call is None:
            await self._say(fill(match.intent.reply or "", match.slots), messages)
            return
        tool_call_id = f"call_{uuid.uuid4().hex[:16]}"
        self._pending_tools[tool_call_id] = match
        arguments = fill_arguments(call.arguments, match.slots)
        await self.stop_ttfb_metrics()
        await self._report_usage(messages, json.dumps(arguments))
        await self.run_function_calls([FunctionCallFromLLM(function_name=call.name, tool_call_id=tool_call_id,
                                                           arguments=arguments, context=context)])

    async def _say(self, reply: str, messages: list[Any]) -> None:
        reply = reply[:MAX_REPLY_CHARS]
        tokens = reply.split(" ")
        for index, token in enumerate(tokens):
            if index == 0:
                await self.stop_ttfb_metrics()
            await self._push_llm_text(token if index == 0 else " " + token)
            if self._token_delay_s:
                await asyncio.sleep(self._token_delay_s)
        await self._report_usage(messages, reply)

    async def _report_usage(self, messages: list[Any], completion: str) -> None:
        prompt_tokens = sum(len(str(message.get("content") or "").split()) for message in messages
                            if isinstance(message, dict))
        completion_tokens = len(completion.split())
        await self.start_llm_usage_metrics(LLMTokenUsage(prompt_tokens=prompt_tokens,
                                                         completion_tokens=completion_tokens,
                                                         total_tokens=prompt_tokens + completion_tokens))


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def speakable_result(content: Any) -> str:
    """What a tool result says out loud: its `speech` field when the tool runner gave one, else plain text."""
    text = content_text(content)
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return text
    if isinstance(value, dict):
        for key in ("speech", "say", "text", "result", "message"):
            if isinstance(value.get(key), str):
                return value[key]
        return ", ".join(f"{k} {v}" for k, v in value.items() if isinstance(v, (str, int, float)))
    if isinstance(value, str):
        return value
    return text
