"""A session's tool calls, numbered and remembered, so a recovered call never runs a non-idempotent tool twice.

Every tool call gets the next number of the session; its HTTP request carries `Idempotency-Key:
<session id>.<number>`, and the count travels in the checkpoint, so the numbering (and a tool server's own
deduplication) is the same whichever worker serves the call. Non-idempotent calls are recorded when they start
and when they finish, and each record change asks for a checkpoint write; the start is awaited (bounded)
before the request goes out, so a crash after the request leaves a record that says so.

After recovery the records of the lost worker answer repeats of the same call (same tool, same arguments):
- finished: the recorded result, without a request ("a repeat gets what the first call got");
- started, never finished (in flight at the crash): not sent again either, since it may have happened; the
  agent says it cannot confirm it (UNCONFIRMED_SPEECH), and the recovery line says so at once
  (UNCONFIRMED_LINE). The LLM context is repaired the same way (the tool message of such a call says so).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from voxfleet.api.voiceagent import Tool
from voxfleet.worker.call_checkpoint import MAX_TOOL_RECORDS, CallCheckpoint, ToolCallRecord

UNCONFIRMED_SPEECH = "I can't confirm whether that went through, so I haven't tried it again. Please check it first."
UNCONFIRMED_LINE = "One thing first: I can't confirm whether your last request went through, so I haven't repeated it."
UNCONFIRMED_RESULT = {"speech": UNCONFIRMED_SPEECH, "ok": False, "error": "unconfirmed",
                      "message": "the call was cut off while this tool ran; it may or may not have happened. Do"
                                 " not call it again; tell the caller it cannot be confirmed."}

Persist = Callable[[], Awaitable[None]]


def argument_fingerprint(arguments: Mapping[str, Any] | str | None) -> str:
    """The arguments' identity (canonical JSON when they parse), short: it is stored per call."""
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else dict(arguments or {})
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(arguments)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ToolLedger:
    def __init__(self, session_id: str, *, persist_now: Persist | None = None,
                 persist_soon: Callable[[], None] | None = None):
        self.session_id = session_id
        self.calls_made = 0
        self.records: list[ToolCallRecord] = []
        self._before_recovery: dict[tuple[str, str], ToolCallRecord] = {}
        self._persist_now = persist_now
        self._persist_soon = persist_soon

    def idempotency_key(self, record: ToolCallRecord) -> str:
        return f"{self.session_id}.{record.number}"

    # -- recovery --------------------------------------------------------------------------------------------

    def restore(self, checkpoint: CallCheckpoint) -> None:
        self.calls_made = max(self.calls_made, checkpoint.calls_made)
        self.records = list(checkpoint.tool_calls[-MAX_TOOL_RECORDS:])
        # The latest record of a (tool, arguments) pair speaks for it.
        self._before_recovery = {(r.name, r.arguments): r for r in self.records}

    def unconfirmed(self) -> list[ToolCallRecord]:
        """Non-idempotent calls the lost worker started and never finished."""
        return [r for r in self._before_recovery.values() if r.state == "started"]

    def repair_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The restored context with each recorded call's tool message saying what became of it."""
        by_call = {r.call_id: r for r in self.records}
        repaired = []
        for message in messages:
            record = by_call.get(message.get("tool_call_id", "")) if message.get("role") == "tool" else None
            if record is not None:
                result = record.result if record.state == "finished" and record.result else UNCONFIRMED_RESULT
                message = {**message, "content": json.dumps(result, ensure_ascii=False)}
            repaired.append(message)
        return repaired

    # -- a call ----------------------------------------------------------------------------------------------

    def replay(self, tool: Tool, fingerprint: str) -> dict[str, Any] | None:
        """What a repeat of a call made before recovery gets instead of a request; None: run it."""
        if tool.idempotent:
            return None
        record = self._before_recovery.get((tool.name, fingerprint))
        if record is None:
            return None
        if record.state == "finished" and record.result is not None:
            return record.result
        return UNCONFIRMED_RESULT

    async def begin(self, tool: Tool, call_id: str, fingerprint: str) -> ToolCallRecord:
        self.calls_made += 1
        record = ToolCallRecord(number=self.calls_made, call_id=call_id[:256], name=tool.name,
                                arguments=fingerprint, state="started")
        if not tool.idempotent:
            self.records.append(record)
            del self.records[:-MAX_TOOL_RECORDS]
            if self._persist_now is not None:
                await self._persist_now()  # before the request: a crash after it must find this record
        elif self._persist_soon is not None:
            self._persist_soon()  # the count, so the next worker's numbers go on from here
        return record

    def finish(self, record: ToolCallRecord, result: dict[str, Any]) -> None:
        if record in self.records:
            self.records[self.records.index(record)] = record.model_copy(update={"state": "finished",
                                                                                  "result": result})
        if self._persist_soon is not None:
            self._persist_soon()
