"""Barge-in is blocked only while a non-interruptible tool runs.

Pipecat's FunctionCallUserMuteStrategy mutes the caller during every tool call. A tool the spec marks
`interruptible: false` (placing an order, a payment) must not be cancelled by the caller talking over it, but
an interruptible lookup should stay interruptible; so this strategy tracks only calls of the named tools.
"""

from __future__ import annotations

from pipecat.frames.frames import Frame, FunctionCallCancelFrame, FunctionCallResultFrame, FunctionCallsStartedFrame
from pipecat.turns.user_mute import BaseUserMuteStrategy


class NonInterruptibleToolMuteStrategy(BaseUserMuteStrategy):
    def __init__(self, tool_names: set[str]):
        super().__init__()
        self._tool_names = frozenset(tool_names)
        self._running: set[str] = set()

    async def process_frame(self, frame: Frame) -> bool:
        await super().process_frame(frame)
        if isinstance(frame, FunctionCallsStartedFrame):
            self._running.update(call.tool_call_id for call in frame.function_calls
                                 if call.function_name in self._tool_names)
        elif isinstance(frame, FunctionCallResultFrame):
            if frame.properties is None or frame.properties.is_final:
                self._running.discard(frame.tool_call_id)
        elif isinstance(frame, FunctionCallCancelFrame):
            self._running.discard(frame.tool_call_id)
        return bool(self._running)
