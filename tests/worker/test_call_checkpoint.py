"""The call checkpoint without servers: its seal (who can open it), its byte budget and the tool ledger's rules."""

from __future__ import annotations

import json

import pytest

from voxfleet.api.voiceagent import Tool
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.worker.call_checkpoint import MAX_CHECKPOINT_BYTES, CallCheckpoint, ToolCallRecord
from voxfleet.worker.checkpoint_seal import CheckpointUnreadable, checkpoint_key, open_sealed, seal
from voxfleet.worker.tool_ledger import UNCONFIRMED_RESULT, ToolLedger, argument_fingerprint

ROOT = "root-worker-token-" + "r" * 30
ACME = token_for_namespace(ROOT, "tenant-acme")
OTHER = token_for_namespace(ROOT, "tenant-other")
SESSION, ROOM = "sess-0123456789abcdef", "acme.concierge.sess-0123456789abcdef"


def _tool(name: str = "book_table", idempotent: bool = False) -> Tool:
    return Tool.model_validate({"name": name, "description": "d", "idempotent": idempotent,
                                "parameters": {"type": "object", "properties": {"party": {"type": "integer"}}},
                                "http": {"url": "http://127.0.0.1:9/book"}})


def test_a_sealed_checkpoint_opens_only_with_its_namespace_session_and_room():
    key = checkpoint_key(ACME, SESSION)
    sealed = seal(b'{"secret":"booked table 12"}', key=key, room=ROOM, session_id=SESSION)
    assert sealed.startswith("v1.") and "booked" not in sealed and "table" not in sealed
    assert open_sealed(sealed, key=key, room=ROOM, session_id=SESSION) == b'{"secret":"booked table 12"}'
    refused = {
        "another tenant's worker": dict(key=checkpoint_key(OTHER, SESSION), room=ROOM, session_id=SESSION),
        "another session's key": dict(key=checkpoint_key(ACME, SESSION + "x"), room=ROOM, session_id=SESSION),
        "copied into another room": dict(key=key, room=ROOM + "x", session_id=SESSION),
    }
    for what, where in refused.items():
        with pytest.raises(CheckpointUnreadable):
            open_sealed(sealed, **where)
        print(f"refused: {what}")
    body = sealed[3:]
    flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    for tampered in (f"v1.{flipped}", sealed[:-4], "v2." + body, "v1.", "v1.!!!!", 42, None):
        with pytest.raises(CheckpointUnreadable):
            open_sealed(tampered, key=key, room=ROOM, session_id=SESSION)
    assert seal(b"x", key=key, room=ROOM, session_id=SESSION) != seal(b"x", key=key, room=ROOM, session_id=SESSION)


def test_the_budget_drops_the_oldest_turns_and_never_splits_a_tool_call_from_its_result():
    messages = []
    for turn in range(200):
        messages += [{"role": "user", "content": f"caller turn {turn} " + "words " * 20},
                     {"role": "assistant", "tool_calls": [{"id": f"c{turn}", "type": "function",
                                                           "function": {"name": "f", "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": f"c{turn}", "content": "result " * 30},
                     {"role": "assistant", "content": f"agent turn {turn} " + "x" * 5000}]
    messages.append({"role": "system", "content": "not ours to keep"})
    messages.append(object())  # a provider-specific message: never in a checkpoint
    checkpoint = CallCheckpoint(session_id=SESSION, caller="caller-1", metadata={"ticket": "T-1"},
                                messages=messages, calls_made=200,
                                tool_calls=[ToolCallRecord(number=n, call_id=f"c{n}", name="f", arguments="a" * 32,
                                                           state="finished", result={"speech": "s" * 5000, "ok": True})
                                            for n in range(1, 60)])
    data = checkpoint.to_bytes()
    back = CallCheckpoint.from_bytes(data)
    print(f"checkpoint of a 200-turn call: {len(data)} bytes of {MAX_CHECKPOINT_BYTES},"
          f" {len(back.messages)} messages kept, {len(back.tool_calls)} tool records")
    assert len(data) <= MAX_CHECKPOINT_BYTES
    assert back.messages and back.messages[0]["role"] == "user"  # whole turns, from a caller turn on
    assert back.messages[-1]["content"].startswith("agent turn 199") and len(back.messages[-1]["content"]) <= 2000
    assert all(m["role"] != "system" for m in back.messages)
    ids = {m.get("tool_call_id") for m in back.messages if m["role"] == "tool"}
    calls = {c["id"] for m in back.messages for c in m.get("tool_calls", [])}
    assert ids == calls
    assert 8 <= len(back.tool_calls) <= 32 and back.tool_calls[-1].number == 59  # the newest kept
    assert back.tool_calls[-1].result == {"speech": "s" * 256, "ok": True, "truncated": True}
    assert back.metadata == {"ticket": "T-1"} and back.caller == "caller-1" and back.calls_made == 200


async def test_the_ledger_numbers_calls_and_answers_repeats_after_recovery_from_its_records():
    writes: list[str] = []

    async def now() -> None:
        writes.append("now")

    before = ToolLedger(SESSION, persist_now=now, persist_soon=lambda: writes.append("soon"))
    book, lookup = _tool(), _tool("lookup", idempotent=True)
    done = await before.begin(book, "call-a", argument_fingerprint({"party": 2}))
    before.finish(done, {"speech": "Booked table 12.", "ok": True, "result": {"table": 12}})
    looked = await before.begin(lookup, "call-b", argument_fingerprint("{}"))
    running = await before.begin(book, "call-c", argument_fingerprint('{"party": 4}'))
    assert [before.idempotency_key(r) for r in (done, looked, running)] == [f"{SESSION}.1", f"{SESSION}.2",
                                                                           f"{SESSION}.3"]
    assert writes == ["now", "soon", "soon", "now"]  # a non-idempotent start is written before its request
    assert before.replay(book, argument_fingerprint({"party": 2})) is None  # no recovery yet: a new call runs

    checkpoint = CallCheckpoint(session_id=SESSION, tool_calls=before.records, calls_made=before.calls_made)
    after = ToolLedger(SESSION)
    after.restore(CallCheckpoint.from_bytes(checkpoint.to_bytes()))
    assert after.replay(book, argument_fingerprint('{"party":2}')) == {"speech": "Booked table 12.", "ok": True,
                                                                      "result": {"table": 12}}
    assert after.replay(book, argument_fingerprint({"party": 4})) == UNCONFIRMED_RESULT  # in flight at the crash
    assert after.replay(book, argument_fingerprint({"party": 6})) is None
    assert after.replay(lookup, argument_fingerprint("{}")) is None  # idempotent: safe to run again
    assert [r.call_id for r in after.unconfirmed()] == ["call-c"]
    nxt = await after.begin(book, "call-d", argument_fingerprint({"party": 6}))
    assert after.idempotency_key(nxt) == f"{SESSION}.4"  # numbering goes on where the lost worker stopped
    repaired = after.repair_messages([{"role": "tool", "tool_call_id": "call-c", "content": "IN_PROGRESS"},
                                      {"role": "tool", "tool_call_id": "call-a", "content": "IN_PROGRESS"},
                                      {"role": "user", "content": "hello"}])
    assert json.loads(repaired[0]["content"])["error"] == "unconfirmed"
    assert json.loads(repaired[1]["content"])["result"] == {"table": 12}
    assert repaired[2] == {"role": "user", "content": "hello"}
