"""A recovered agent continues the call: real workers, a real livekit-server, a real HTTP tool server and an
OpenAI-compatible LLM server (tests/fakes), a caller judged by what it hears in the room.

The serving worker is SIGKILLed and a second one is dispatched the way the gateway recovers a session (same
session id and room, `recovery: true`, a new agent identity, the caller's identity); it reads the call's sealed
checkpoint from the room's metadata. Judged: the tool server saw a non-idempotent tool once (with an
Idempotency-Key of the session and call number), the LLM request after recovery carries the earlier turns, and
the caller hears the answer; the caller reads only ciphertext in the room's metadata; a tampered checkpoint is
ignored with a warning and the call goes on without its history.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from livekit import api as lkapi

from tests.callers.caller_bot import CallerBot, Recogniser, mint_token
from tests.fakes.http_server import LocalHTTPServer, Reply
from tests.fakes.openai_server import Script, ToolCallPlan
from tests.fakes.providers import FakeProviders, start_fake_providers
from tests.worker.worker_harness import TOKEN, WorkerUnderTest, offline_spec
from voxfleet.api import room_names
from voxfleet.gateway.livekit_tokens import LiveKitTokens
from voxfleet.gateway.settings import LiveKitRegion
from voxfleet.worker.call_checkpoint import CallCheckpoint
from voxfleet.worker.checkpoint_seal import checkpoint_key, open_sealed
from voxfleet.worker.tool_ledger import UNCONFIRMED_LINE, UNCONFIRMED_SPEECH

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

GREETING = "Hello, thank you for calling. How can I help you today?"
RECOVERY = "Sorry, we were cut off. I am back. How can I help?"
ASKED = "book a table for two at seven"
ASKED_AGAIN = "please book it again"
BOOKED = "Booked table twelve for two at seven."
ARGUMENTS = {"party": 2, "time": "19:00"}
# Bounds a loaded 2-core CI machine meets (load 20+ seen: an answer took 14 s from the caller's last word); the
# recovery's own speed is the chaos benchmark's to judge, not this test's.
LOADED_S = 45.0
LINE_PAUSE_S = 1.2  # a pause between sentences of one line is not its end


class SpeakTheToolResult(Script):
    """Calls book_table when the caller asks to book; after a tool result, says its `speech` (what the runner
    made speakable, or what the ledger recorded) and nothing else, so the caller hears plain words."""

    def answer(self, body: dict[str, Any]) -> tuple[str, ToolCallPlan | None]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            try:
                return str(json.loads(last.get("content") or "{}").get("speech") or "Done."), None
            except (ValueError, AttributeError):
                return "Done.", None
        if last.get("role") == "user" and "book" in str(last.get("content")):
            return "", ToolCallPlan("book_table", ARGUMENTS)
        return "How can I help?", None


def _spec(fakes: FakeProviders, tool_url: str) -> dict[str, Any]:
    return offline_spec(
        greeting=GREETING, pipeline=fakes.pipeline_spec(), intents=[],
        tools=[{"name": "book_table", "description": "Book a table.",
                "parameters": {"type": "object", "properties": {"party": {"type": "integer"},
                                                                 "time": {"type": "string"}}},
                "http": {"url": tool_url, "method": "POST", "timeoutMs": 15000},
                "interruptible": False, "idempotent": False, "filler": {"afterMs": 10000, "say": "One moment."}}],
        turnDetection={"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 300}},
        # The agent's lines as text in the room too: long lines are judged from them (PocketSphinx on a loaded
        # machine's choppy audio is for short phrases).
        observability={"recordTranscripts": True})


class Call:
    """One session as the gateway would run it: its id, room, the caller, and dispatches with minted tokens."""

    def __init__(self, region: Any):
        self.region = region
        self.session_id = f"sess-{uuid.uuid4().hex}"
        self.room = room_names.room_for_session("acme", "concierge", self.session_id)
        self.caller = f"caller-{uuid.uuid4().hex[:6]}"
        self.tokens = LiveKitTokens({"us-east": LiveKitRegion(url=region.url, api_key=region.api_key,
                                                               api_secret=region.api_secret)})

    def dispatch(self, worker: WorkerUnderTest, *, recovery: bool) -> None:
        identity = room_names.agent_identity(uuid.uuid4().hex[:12], worker.config["agent"] + "-pod")
        token = self.tokens.agent("us-east", room=self.room, identity=identity, session_id=self.session_id,
                                  ttl_seconds=600)
        body = {"sessionId": self.session_id, "tenant": "acme", "agent": "concierge", "region": "us-east",
                "room": self.room, "livekitUrl": self.region.url, "livekitToken": token.jwt,
                "agentIdentity": identity, "callerIdentity": self.caller, "recovery": recovery,
                "metadata": {"ticket": "T-77"}}
        if recovery:
            body["metadata"] = {}  # the gateway's recovery knows no metadata: the checkpoint brings it back
        reply = httpx.post(f"{worker.url}/v1/dispatch", json=body, headers=worker.headers, timeout=10)
        assert reply.status_code == 201, reply.text

    def caller_token(self) -> str:
        return mint_token(self.region, room=self.room, identity=self.caller)

    async def room_metadata(self) -> str:
        async with lkapi.LiveKitAPI(self.region.url, self.region.api_key, self.region.api_secret) as client:
            rooms = (await client.room.list_rooms(lkapi.ListRoomsRequest(names=[self.room]))).rooms
            return rooms[0].metadata if rooms else ""

    async def set_room_metadata(self, metadata: str) -> None:
        async with lkapi.LiveKitAPI(self.region.url, self.region.api_key, self.region.api_secret) as client:
            await client.room.update_room_metadata(lkapi.UpdateRoomMetadataRequest(room=self.room,
                                                                                  metadata=metadata))

    def open_checkpoint(self, metadata: str) -> CallCheckpoint | None:
        """The test holds the namespace's worker token, as the workers do (a caller does not)."""
        sealed = json.loads(metadata or "{}").get(room_names.METADATA_CHECKPOINT)
        if sealed is None:
            return None
        return CallCheckpoint.from_bytes(open_sealed(sealed, key=checkpoint_key(TOKEN, self.session_id),
                                                     room=self.room, session_id=self.session_id))

    async def wait_for_checkpoint(self, done, timeout: float = LOADED_S) -> CallCheckpoint:
        deadline = time.monotonic() + timeout
        checkpoint = None
        while time.monotonic() < deadline:
            checkpoint = self.open_checkpoint(await self.room_metadata())
            if checkpoint is not None and done(checkpoint):
                return checkpoint
            await asyncio.sleep(0.1)
        raise AssertionError(f"no such checkpoint within {timeout} s; last: {checkpoint}")


class Stage:
    """What the tests share (a worker's warm start takes 20-40 s on a loaded machine): the provider fakes, the
    tool server (each test sets its handler) and four workers; each test kills one and recovers on `spare`."""

    def __init__(self, fakes: FakeProviders, tools: LocalHTTPServer, workers: list[WorkerUnderTest]):
        self.fakes, self.tools, self.workers = fakes, tools, workers
        self.spare = workers[0]
        self.serving = iter(workers[1:])
        self.heard: deque[str] = deque()  # what the STT fake "recognises" next, set by each test
        self.tool: Callable[[Any], Reply] = lambda request: Reply(status=500)
        self.tool_calls: list[dict[str, str]] = []

    def recognise(self, _pcm: bytes, _sample_rate: int) -> str:
        # A loaded machine's energy detector may cut one line in two: the rest is heard as nothing.
        return self.heard.popleft() if self.heard else ""

    async def say(self, caller: CallerBot, text: str) -> Any:
        self.heard.clear()
        self.heard.append(text)
        return await caller.say(text)

    def handle_tool(self, request: Any) -> Reply:
        self.tool_calls.append({name.lower(): value for name, value in request.headers.items()})
        return self.tool(request)


@pytest.fixture(scope="module")
def stage(livekit, tmp_path_factory):
    region = livekit["us-east"]
    fakes = start_fake_providers(script=SpeakTheToolResult())
    holder: list[Stage] = []
    tools = LocalHTTPServer(lambda request: holder[0].handle_tool(request)).start()
    directory = tmp_path_factory.mktemp("continuation")
    workers: list[WorkerUnderTest] = []
    try:
        spec = _spec(fakes, f"{tools.url}/book")
        workers = [WorkerUnderTest.start(directory, spec, livekit=region, env=fakes.secret_env(), wait_ready=0)
                   for _ in range(4)]
        for worker in workers:  # started side by side: they warm up at once
            worker.wait_ready(120)
        holder.append(Stage(fakes, tools, workers))
        fakes.deepgram.recognize = holder[0].recognise
        yield holder[0]
    finally:
        for worker in workers:
            worker.stop()
        tools.stop()
        fakes.stop()


async def _agent_line(caller: CallerBot, text: str, *, since: float) -> str:
    """The agent's transcript line (published in the room) that contains `text`, said after `since`."""
    def found() -> str | None:
        return next((line.text for line in caller.transcript_lines()
                     if line.role == "agent" and line.at >= since and text in line.text), None)

    return await caller.heard.wait_for(found, timeout=LOADED_S, what=f"the agent saying {text!r}")


def _kill(worker: WorkerUnderTest) -> None:
    worker.process.kill()  # SIGKILL: no drain, no goodbye, the agent participant just stops
    worker.process.wait(10)


def _said(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request.get("messages", []) if m.get("role") in ("user", "assistant")
            and m.get("content")]


async def test_a_recovered_call_continues_the_conversation_and_never_books_twice(livekit, stage):
    region = livekit["us-east"]
    stage.tool = lambda request: Reply(body={"speech": BOOKED, "table": 12})
    stage.tool_calls.clear()
    first, second = next(stage.serving), stage.spare
    call = Call(region)
    call.dispatch(first, recovery=False)
    async with CallerBot(region.url, call.caller_token()) as caller:
        await caller.wait_for_agent_speech(timeout=LOADED_S, silence_s=LINE_PAUSE_S)
        asked = await stage.say(caller, ASKED)
        answer = await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=LOADED_S,
                                                  silence_s=LINE_PAUSE_S)
        # The checkpoint after the agent's answer: the turn, the finished call and its result.
        before = await call.wait_for_checkpoint(lambda c: any(BOOKED in s for s in _said({"messages": c.messages})))
        seen_by_caller = caller.room.metadata
        _kill(first)
        killed_at = time.monotonic()
        requests_before = len(stage.fakes.openai.requests)
        call.dispatch(second, recovery=True)
        recovery = await caller.wait_for_agent_speech(after=killed_at, timeout=LOADED_S, silence_s=LINE_PAUSE_S)
        again = await stage.say(caller, ASKED_AGAIN)
        replayed = await caller.wait_for_agent_speech(after=again.voice_ended, timeout=LOADED_S,
                                                  silence_s=LINE_PAUSE_S)
        replayed_line = await _agent_line(caller, BOOKED, since=again.voice_ended)
        after = await call.wait_for_checkpoint(lambda c: c.sequence > before.sequence and len(
            [s for s in _said({"messages": c.messages}) if BOOKED in s]) >= 2)

    # One small grammar per phrase: PocketSphinx's search over many phrases and long audio can take minutes.
    booked, recovered = Recogniser([BOOKED]), Recogniser([RECOVERY])
    print(f"checkpoint before the kill: sequence {before.sequence}, {len(before.messages)} messages,"
          f" {len(seen_by_caller)} bytes of room metadata; recovery line heard"
          f" {recovery.start - killed_at:.2f} s after the kill")
    heard = {"answer": booked.recognise(answer.pcm), "recovery line": recovered.recognise(recovery.pcm),
             "answer after recovery": booked.recognise(replayed.pcm)}
    print(f"recognised in the room's audio: {heard}")
    # Half the words of each, in order: a loaded machine's audio drops frames (the text is judged below).
    assert booked.contains(answer.pcm, BOOKED, min_share=0.5), heard
    assert recovered.contains(recovery.pcm, RECOVERY, min_share=0.5), heard
    assert booked.contains(replayed.pcm, BOOKED, min_share=0.5), heard
    assert replayed_line == BOOKED and replayed.duration >= 1.0  # the agent's line, as text and as audio

    # The tool server saw the booking once, keyed by the session and its call number.
    assert len(stage.tool_calls) == 1, f"the non-idempotent tool ran {len(stage.tool_calls)} times"
    assert stage.tool_calls[0].get("idempotency-key") == f"{call.session_id}.1"
    # The LLM request after recovery carries the earlier turns (and the repeat got the recorded result).
    later = stage.fakes.openai.requests[requests_before:]
    assert later, "the recovered worker asked the LLM nothing"
    said = _said(later[0])
    assert said[:2] == [ASKED, BOOKED] and said[-1] == ASKED_AGAIN, said
    assert json.loads(later[-1]["messages"][-1]["content"])["speech"] == BOOKED
    # The recovered worker took the session's metadata and caller from the checkpoint and writes them on; the
    # repeat answered from the record sent nothing and took no call number.
    assert after.metadata == {"ticket": "T-77"} and after.caller == call.caller and after.calls_made == 1
    # The caller (a participant: it receives room metadata) reads only ciphertext.
    readable = json.loads(seen_by_caller)
    assert set(readable) == {room_names.METADATA_CHECKPOINT}
    assert readable[room_names.METADATA_CHECKPOINT].startswith("v1.")
    for plain in ("table", "twelve", "T-77", call.caller, "book"):
        assert plain not in seen_by_caller


async def test_a_tool_in_flight_at_the_crash_is_not_run_again_and_the_agent_says_it_cannot_confirm(livekit, stage):
    region = livekit["us-east"]
    stage.tool = lambda request: Reply(body={"speech": BOOKED}, delay_s=6.0)  # the worker dies while this runs
    stage.tool_calls.clear()
    first, second = next(stage.serving), stage.spare
    call = Call(region)
    call.dispatch(first, recovery=False)
    async with CallerBot(region.url, call.caller_token()) as caller:
        await caller.wait_for_agent_speech(timeout=LOADED_S, silence_s=LINE_PAUSE_S)
        await stage.say(caller, ASKED)
        started = await call.wait_for_checkpoint(lambda c: any(r.state == "started" for r in c.tool_calls))
        deadline = time.monotonic() + LOADED_S
        while not stage.tool_calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert stage.tool_calls, "the tool was never called"
        _kill(first)
        killed_at = time.monotonic()
        requests_before = len(stage.fakes.openai.requests)
        call.dispatch(second, recovery=True)
        recovery = await caller.wait_for_agent_speech(after=killed_at, timeout=LOADED_S, silence_s=LINE_PAUSE_S)
        recovery_line = await _agent_line(caller, UNCONFIRMED_LINE, since=killed_at)
        await asyncio.sleep(LINE_PAUSE_S)  # the line's text comes at the end of its turn: let it finish playing
        again = await stage.say(caller, ASKED_AGAIN)
        answer = await caller.wait_for_agent_speech(after=again.voice_ended, timeout=LOADED_S,
                                                  silence_s=LINE_PAUSE_S)
        answer_line = await _agent_line(caller, UNCONFIRMED_SPEECH, since=again.voice_ended)
    heard_answer = Recogniser([UNCONFIRMED_SPEECH]).recognise(answer.pcm)
    print(f"recovery line: {recovery_line!r} (heard from {recovery.start - killed_at:.2f} s after the kill);"
          f" answer to the repeat: {answer_line!r}, recognised from its audio as {heard_answer!r}")
    assert started.tool_calls[-1].name == "book_table" and started.tool_calls[-1].state == "started"
    assert len(stage.tool_calls) == 1, f"the tool in flight at the crash ran {len(stage.tool_calls)} times"
    assert recovery_line.startswith(RECOVERY) and recovery_line.endswith(UNCONFIRMED_LINE)
    assert answer_line == UNCONFIRMED_SPEECH and answer.duration >= 1.0  # the agent's line, as text and audio
    # The repeat's answer reached the LLM as the recorded "unconfirmed" result, not as a new result.
    last = stage.fakes.openai.requests[requests_before:][-1]["messages"][-1]
    assert last["role"] == "tool" and json.loads(last["content"])["error"] == "unconfirmed"


async def test_a_tampered_checkpoint_is_ignored_with_a_warning_and_the_call_goes_on_without_history(livekit, stage):
    region = livekit["us-east"]
    stage.tool = lambda request: Reply(body={"speech": BOOKED})
    first, second = next(stage.serving), stage.spare
    call = Call(region)
    call.dispatch(first, recovery=False)
    async with CallerBot(region.url, call.caller_token()) as caller:
        await caller.wait_for_agent_speech(timeout=LOADED_S, silence_s=LINE_PAUSE_S)
        asked = await stage.say(caller, ASKED)
        await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=LOADED_S,
                                                  silence_s=LINE_PAUSE_S)
        await call.wait_for_checkpoint(lambda c: any(BOOKED in s for s in _said({"messages": c.messages})))
        _kill(first)
        metadata = json.loads(await call.room_metadata())
        sealed = metadata[room_names.METADATA_CHECKPOINT]
        middle = len(sealed) // 2
        metadata[room_names.METADATA_CHECKPOINT] = (sealed[:middle] + ("A" if sealed[middle] != "A" else "B")
                                                    + sealed[middle + 1:])
        await call.set_room_metadata(json.dumps(metadata))
        killed_at = time.monotonic()
        requests_before = len(stage.fakes.openai.requests)
        call.dispatch(second, recovery=True)
        recovery = await caller.wait_for_agent_speech(after=killed_at, timeout=LOADED_S, silence_s=LINE_PAUSE_S)
        again = await stage.say(caller, ASKED_AGAIN)
        answer = await caller.wait_for_agent_speech(after=again.voice_ended, timeout=LOADED_S,
                                                  silence_s=LINE_PAUSE_S)
    recovered, booked = Recogniser([RECOVERY]), Recogniser([BOOKED])
    assert recovered.contains(recovery.pcm, RECOVERY, min_share=0.5), recovered.recognise(recovery.pcm)
    assert booked.contains(answer.pcm, BOOKED, min_share=0.5), booked.recognise(answer.pcm)
    said = _said(stage.fakes.openai.requests[requests_before])
    print(f"after the tampered checkpoint the LLM heard: {said}")
    assert said == [RECOVERY, ASKED_AGAIN]  # no history: the new worker starts over from its recovery line
    warnings = [json.loads(line) for line in second.log_path.read_text().splitlines()
                if "call checkpoint ignored" in line and call.session_id in line]
    assert warnings and warnings[0]["level"] == "warning" and "authentication failed" in warnings[0]["reason"]
