"""A local Deepgram live-transcription server (the v1 `listen` websocket protocol).

It speaks what the Deepgram SDK expects: linear16 audio in binary frames; `KeepAlive`, `Finalize` and
`CloseStream` JSON messages; `Results` messages with `is_final`, `speech_final` and `from_finalize`,
`SpeechStarted` (when `vad_events=true`) and a closing `Metadata` (no interim results).

It really listens to the audio: an energy detector finds where speech starts and stops, and an utterance ends
after `endpointing` ms of silence (at least `min_silence_ms`, since an energy detector hears gaps inside words
that Deepgram's model does not) or when the client sends `Finalize`. What it "recognises" comes from
`recognize(pcm, sample_rate)`: by default the next of the `transcripts` it was given. Finals wait
`final_delay_ms`, the simulated provider latency.

    fake = start_fake_deepgram(transcripts=["what is the weather in paris"], final_delay_ms=150)
    DeepgramSTTService(api_key="k", base_url=fake.url)   # fake.url == "http://127.0.0.1:<port>"
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from tests.fakes.server_thread import ServerThread

Recognizer = Callable[[bytes, int], str]
WINDOW_MS = 20


@dataclass
class Utterance:
    started_s: float  # audio time
    audio: bytearray = field(default_factory=bytearray)
    last_voiced_s: float = 0.0
    finalised: bool = False


@dataclass
class FakeDeepgram:
    transcripts: list[str] = field(default_factory=lambda: ["hello"])
    final_delay_ms: float = 0.0
    min_silence_ms: float = 300.0
    energy_threshold: float = 500.0  # RMS of int16 samples that counts as voice
    api_key: str | None = None  # when set, the handshake must carry `Authorization: Token <api_key>`
    recognize: Recognizer | None = None
    connections: list[dict[str, Any]] = field(default_factory=list)  # query and headers of each handshake
    finals: list[dict[str, Any]] = field(default_factory=list)  # the final Results sent, with send times
    _server: ServerThread | None = None

    def __post_init__(self) -> None:
        self._next_transcript = itertools.cycle(self.transcripts)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.url

    def start(self) -> "FakeDeepgram":
        app = web.Application()
        app.router.add_get("/v1/listen", self._listen)
        self._server = ServerThread(app).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    def _recognise(self, pcm: bytes, sample_rate: int) -> str:
        if self.recognize is not None:
            return self.recognize(pcm, sample_rate)
        return next(self._next_transcript)

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != f"Token {self.api_key}":
            return web.json_response({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}, status=401)
        query = dict(request.query)
        self.connections.append({"query": query, "headers": dict(request.headers)})
        if query.get("encoding", "linear16") != "linear16":
            return web.json_response({"err_code": "Bad Request", "err_msg": "fake supports linear16 only"},
                                     status=400)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        session = _Session(self, ws, query)
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    await session.audio(message.data)
                elif message.type == WSMsgType.TEXT:
                    kind = json.loads(message.data).get("type")
                    if kind == "Finalize":
                        await session.end_utterance(from_finalize=True)
                    elif kind == "CloseStream":
                        await session.end_utterance(from_finalize=False)
                        break
                elif message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            await session.close()
        return ws


class _Session:
    def __init__(self, fake: FakeDeepgram, ws: web.WebSocketResponse, query: dict[str, str]) -> None:
        self.fake = fake
        self.ws = ws
        self.sample_rate = int(query.get("sample_rate", "16000"))
        self.vad_events = query.get("vad_events", "false") == "true"
        endpointing = query.get("endpointing", "10")
        self.silence_s = max(float(endpointing) if endpointing not in ("false", "") else 0.0,
                             fake.min_silence_ms) / 1000
        self.request_id = str(uuid.uuid4())
        self.window_bytes = self.sample_rate * WINDOW_MS // 1000 * 2
        self.pending = bytearray()
        self.audio_s = 0.0  # audio time received so far
        self.utterance: Utterance | None = None
        self.tasks: set[asyncio.Task] = set()

    async def audio(self, data: bytes) -> None:
        self.pending.extend(data)
        while len(self.pending) >= self.window_bytes:
            window = bytes(self.pending[: self.window_bytes])
            del self.pending[: self.window_bytes]
            samples = np.frombuffer(window, dtype=np.int16).astype(np.float32)
            voiced = float(np.sqrt(np.mean(samples * samples))) >= self.fake.energy_threshold
            self.audio_s += WINDOW_MS / 1000
            utterance = self.utterance
            if voiced and utterance is None:
                utterance = self.utterance = Utterance(started_s=self.audio_s - WINDOW_MS / 1000)
                if self.vad_events:
                    await self._send({"type": "SpeechStarted", "channel": [0], "timestamp": utterance.started_s})
            if utterance is None:
                continue
            utterance.audio.extend(window)
            if voiced:
                utterance.last_voiced_s = self.audio_s
            elif self.audio_s - utterance.last_voiced_s >= self.silence_s:
                await self.end_utterance(from_finalize=False)

    async def end_utterance(self, *, from_finalize: bool) -> None:
        utterance, self.utterance = self.utterance, None
        if utterance is None or utterance.finalised:
            if from_finalize:  # nothing pending: Deepgram still answers the Finalize
                await self._send(self._results("", Utterance(self.audio_s, last_voiced_s=self.audio_s),
                                               is_final=True, speech_final=False, from_finalize=True))
            return
        utterance.finalised = True
        transcript = self.fake._recognise(bytes(utterance.audio), self.sample_rate)
        message = self._results(transcript, utterance, is_final=True, speech_final=not from_finalize,
                                from_finalize=from_finalize)
        task = asyncio.ensure_future(self._send_later(message, self.fake.final_delay_ms / 1000))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send_later(self, message: dict[str, Any], delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.fake.finals.append({"transcript": message["channel"]["alternatives"][0]["transcript"],
                                 "sent_at": time.monotonic(), "from_finalize": message.get("from_finalize")})
        await self._send(message)

    def _results(self, transcript: str, utterance: Utterance, *, is_final: bool, speech_final: bool,
                 from_finalize: bool = False) -> dict[str, Any]:
        end = max(utterance.last_voiced_s, utterance.started_s)
        words = transcript.split()
        step = (end - utterance.started_s) / max(len(words), 1)
        message: dict[str, Any] = {
            "type": "Results", "channel_index": [0, 1], "start": round(utterance.started_s, 3),
            "duration": round(end - utterance.started_s, 3), "is_final": is_final, "speech_final": speech_final,
            "channel": {"alternatives": [{
                "transcript": transcript, "confidence": 0.99,
                "words": [{"word": word.lower().strip(".,?!"), "punctuated_word": word, "confidence": 0.99,
                           "start": round(utterance.started_s + i * step, 3),
                           "end": round(utterance.started_s + (i + 1) * step, 3)} for i, word in enumerate(words)],
            }]},
            "metadata": {"request_id": self.request_id, "model_uuid": str(uuid.UUID(int=0)),
                         "model_info": {"name": "fake-general", "version": "2026-01-01", "arch": "fake"}},
        }
        if from_finalize:
            message["from_finalize"] = True
        return message

    async def _send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(message))

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._send({"type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
                          "sha256": "0" * 64, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "duration": round(self.audio_s, 3), "channels": 1})
        if not self.ws.closed:
            await self.ws.close()


def start_fake_deepgram(*, transcripts: list[str] | None = None, final_delay_ms: float = 0.0,
                        api_key: str | None = None, recognize: Recognizer | None = None,
                        min_silence_ms: float = 300.0) -> FakeDeepgram:
    """A running fake; pass `.url` as DeepgramSTTService's base_url."""
    return FakeDeepgram(transcripts=transcripts or ["hello"], final_delay_ms=final_delay_ms, api_key=api_key,
                        recognize=recognize, min_silence_ms=min_silence_ms).start()
