"""What a call's checkpoint holds, and how it is kept small: what a recovering worker needs to continue the call.

- who the caller is, the session's metadata and whether it is an eval run (a recovery dispatch carries only
  what the gateway can see in the room: the caller, and eval mode from the lost agent's token);
- the conversation so far: the LLM context after the spec's system prompt (which the new worker has from its
  own spec), newest turns first into a byte budget, cut at a caller turn so no tool result loses its call;
- the non-idempotent tool calls, started and finished, with the result the LLM was given, and how many tool
  calls the session has made (the number in each call's Idempotency-Key, so keys stay stable across recovery).

The budget keeps every write small: room metadata goes to every participant on each change, and LiveKit refuses
metadata over its `limit.max_metadata_size` (512 KiB by default). Parsed back with pydantic, defensively: the
text was authenticated, but may come from an older or newer worker.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_CHECKPOINT_BYTES = 16 * 1024  # plaintext JSON; sealed it is about 4/3 of that (base64)
MAX_MESSAGE_CHARS = 2000  # per text content: a long answer is cut, the turn kept
MAX_TOOL_RECORDS = 32  # the most recent non-idempotent calls ...
MAX_TOOL_RECORD_BYTES = 6 * 1024  # ... as many of them as fit in this (session metadata takes up to 4 KiB more)
MAX_RESULT_BYTES = 512  # a recorded result beyond this keeps only (the start of) what the caller was told
_ROLES = {"user", "assistant", "tool", "developer"}
_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


class ToolCallRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    number: int = Field(ge=1, description="The session's count of tool calls when this one began.")
    call_id: str = Field(max_length=256, description="The LLM's tool_call_id.")
    name: str = Field(max_length=64)
    arguments: str = Field(max_length=64, description="Fingerprint of the canonical arguments.")
    state: Literal["started", "finished"]
    result: dict[str, Any] | None = Field(default=None, description="What the LLM was given (finished calls).")


class CallCheckpoint(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal[1] = 1
    session_id: str = Field(max_length=256)
    sequence: int = Field(default=0, ge=0, description="Writes so far in this session, across recoveries.")
    caller: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Any] = Field(default_factory=dict)
    eval_mode: bool = False
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    calls_made: int = Field(default=0, ge=0)

    @field_validator("messages", mode="before")
    @classmethod
    def _standard_messages_only(cls, value: Any) -> Any:
        # A context may hold provider-specific message objects: they mean nothing to another provider's worker.
        return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else value

    def to_bytes(self, budget: int = MAX_CHECKPOINT_BYTES) -> bytes:
        """Compact JSON of at most `budget` bytes where the conversation allows: the oldest turns go first."""
        records: list[ToolCallRecord] = []
        room = MAX_TOOL_RECORD_BYTES
        for record in reversed(self.tool_calls[-MAX_TOOL_RECORDS:]):  # newest first: those a repeat is likely of
            record = _bounded_record(record)
            room -= len(_dumps(record.model_dump(mode="json"))) + 1
            if room < 0:
                break
            records.insert(0, record)
        messages = [m for m in (_clean_message(m) for m in self.messages) if m is not None]
        base = self.model_copy(update={"messages": [], "tool_calls": records})
        room = budget - len(_dumps(base.model_dump(mode="json")))
        kept: list[dict[str, Any]] = []
        for message in reversed(messages):
            size = len(_dumps(message)) + 1
            if size > room:
                break
            room -= size
            kept.append(message)
        kept.reverse()
        first_user = next((i for i, m in enumerate(kept) if m.get("role") == "user"), len(kept))
        body = base.model_dump(mode="json")
        body["messages"] = kept[first_user:]
        return _dumps(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> "CallCheckpoint":
        return cls.model_validate_json(data)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _clean_message(message: Any) -> dict[str, Any] | None:
    """A standard (OpenAI-shaped) message with only the keys an LLM reads; text cut to MAX_MESSAGE_CHARS."""
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        return None
    clean = {key: message[key] for key in _MESSAGE_KEYS if key in message}
    content = clean.get("content")
    if isinstance(content, str):
        clean["content"] = content[:MAX_MESSAGE_CHARS]
    elif isinstance(content, list):  # content parts: only text survives (no audio or images in a checkpoint)
        texts = [str(p.get("text", ""))[:MAX_MESSAGE_CHARS] for p in content
                 if isinstance(p, dict) and p.get("type") == "text"]
        clean["content"] = " ".join(texts)[:MAX_MESSAGE_CHARS]
    elif content is not None:
        clean["content"] = str(content)[:MAX_MESSAGE_CHARS]
    return clean


def _bounded_record(record: ToolCallRecord) -> ToolCallRecord:
    if record.result is None or len(_dumps(record.result)) <= MAX_RESULT_BYTES:
        return record
    speech = record.result.get("speech")
    kept = {"speech": speech[:MAX_RESULT_BYTES // 2] if isinstance(speech, str) else "",
            "ok": bool(record.result.get("ok")), "truncated": True}
    return record.model_copy(update={"result": kept})
