"""A local Cartesia TTS websocket server (`/tts/websocket`), speaking with eSpeak NG.

The protocol is Cartesia's: JSON requests carrying `transcript`, `context_id`, `continue`, `voice`, `model_id`
and `output_format` (raw pcm_s16le at the requested sample rate); `{"context_id", "cancel": true}` to stop a
context. Answers are `chunk` messages with base64 PCM, `timestamps` with word timings, and `done` when a context
that was told `continue: false` has sent all its audio. The audio is real speech (eSpeak NG, resampled to the
requested rate), so a listener can recognise it. The first audio of each context waits `ttfb_ms`.

    fake = start_fake_cartesia(ttfb_ms=120)
    CartesiaTTSService(api_key="k", url=fake.websocket_url)   # ws://127.0.0.1:<port>/tts/websocket
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr
from aiohttp import WSMsgType, web

from tests.fakes.server_thread import ServerThread
from voxfleet.worker.providers.espeak_voice import ESpeakVoice

CHUNK_MS = 40


def speak(text: str, sample_rate: int) -> bytes:
    """eSpeak NG speech for `text` as 16-bit mono PCM at `sample_rate` (what this fake sends)."""
    voice = ESpeakVoice.shared()
    pcm = voice.synthesize_pcm(text)
    if not pcm or sample_rate == voice.sample_rate:
        return pcm
    samples = np.frombuffer(pcm, dtype=np.int16)
    return soxr.resample(samples, voice.sample_rate, sample_rate).astype(np.int16).tobytes()


@dataclass
class _Context:
    sample_rate: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None
    first_audio_sent: bool = False
    audio_s: float = 0.0


@dataclass
class FakeCartesia:
    ttfb_ms: float = 0.0
    api_key: str | None = None  # when set, the handshake must carry it (X-API-Key header or api_key query)
    connections: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    first_audio_at: dict[str, float] = field(default_factory=dict)  # context id -> monotonic send time
    audio_bytes: dict[str, int] = field(default_factory=dict)  # context id -> PCM bytes sent
    _server: ServerThread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.url

    @property
    def websocket_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/tts/websocket"

    def start(self) -> "FakeCartesia":
        app = web.Application()
        app.router.add_get("/tts/websocket", self._websocket)
        self._server = ServerThread(app).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop()

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("X-API-Key") or request.query.get("api_key")
        if self.api_key is not None and key != self.api_key:
            return web.json_response({"error": "Invalid API key"}, status=401)
        self.connections.append({"headers": dict(request.headers), "query": dict(request.query)})
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        contexts: dict[str, _Context] = {}
        send_lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with send_lock:
                if not ws.closed:
                    await ws.send_str(json.dumps(message))

        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                        break
                    continue
                body = json.loads(message.data)
                self.requests.append(body)
                context_id = str(body.get("context_id", ""))
                if body.get("cancel"):
                    context = contexts.pop(context_id, None)
                    if context and context.task:
                        context.task.cancel()
                    continue
                output = body.get("output_format") or {}
                if output.get("container", "raw") != "raw" or output.get("encoding") != "pcm_s16le":
                    await send({"type": "error", "context_id": context_id, "status_code": 400, "done": True,
                                "error": "fake supports raw pcm_s16le only"})
                    continue
                context = contexts.get(context_id)
                if context is None:
                    context = contexts[context_id] = _Context(sample_rate=int(output.get("sample_rate", 24000)))
                    context.task = asyncio.ensure_future(self._speak(context_id, context, send, contexts))
                context.queue.put_nowait((str(body.get("transcript", "")), bool(body.get("continue", False))))
        finally:
            for context in contexts.values():
                if context.task:
                    context.task.cancel()
        return ws

    async def _speak(self, context_id: str, context: _Context, send: Any, contexts: dict[str, _Context]) -> None:
        started = time.monotonic()
        while True:
            text, more = await context.queue.get()
            if text.strip():
                pcm = await asyncio.to_thread(speak, text, context.sample_rate)
                if not context.first_audio_sent:
                    await asyncio.sleep(max(0.0, self.ttfb_ms / 1000 - (time.monotonic() - started)))
                await self._timestamps(context_id, context, text, len(pcm), send)
                chunk_bytes = context.sample_rate * CHUNK_MS // 1000 * 2
                for offset in range(0, len(pcm), chunk_bytes):
                    if not context.first_audio_sent:
                        context.first_audio_sent = True
                        self.first_audio_at[context_id] = time.monotonic()
                    await send({"type": "chunk", "context_id": context_id, "status_code": 206, "done": False,
                                "data": base64.b64encode(pcm[offset:offset + chunk_bytes]).decode(),
                                "step_time": 0.0})
                context.audio_s += len(pcm) / 2 / context.sample_rate
                self.audio_bytes[context_id] = self.audio_bytes.get(context_id, 0) + len(pcm)
            if not more:
                await send({"type": "done", "context_id": context_id, "status_code": 206, "done": True})
                contexts.pop(context_id, None)
                return

    async def _timestamps(self, context_id: str, context: _Context, text: str, pcm_bytes: int, send: Any) -> None:
        words = text.split()
        duration = pcm_bytes / 2 / context.sample_rate
        step = duration / max(len(words), 1)
        starts = [round(context.audio_s + i * step, 3) for i in range(len(words))]
        ends = [round(context.audio_s + (i + 1) * step, 3) for i in range(len(words))]
        await send({"type": "timestamps", "context_id": context_id, "status_code": 206, "done": False,
                    "word_timestamps": {"words": words, "start": starts, "end": ends}})


def start_fake_cartesia(*, ttfb_ms: float = 0.0, api_key: str | None = None) -> FakeCartesia:
    """A running fake; pass `.websocket_url` as CartesiaTTSService's url (or `.url` as a stage baseUrl)."""
    return FakeCartesia(ttfb_ms=ttfb_ms, api_key=api_key).start()
