"""Streaming offline STT on PocketSphinx, driven by the pipeline's VAD.

Audio is decoded only while the caller speaks: a short pre-roll ring keeps the audio before the VAD
confirmed speech, the utterance starts with it, streams while voiced (interim hypotheses a few times a
second, for min-words barge-in), and ends at the VAD stop with one final transcript. Decoders are built at
warm start, one per slot, and reused: no model is loaded per call.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncGenerator

from pipecat.frames.frames import Frame, InterimTranscriptionFrame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601
from pipecat.utils.tracing.service_decorators import traced_stt
from pocketsphinx import Decoder

from voxfleet.worker.providers.sphinx_grammar import Grammar

SAMPLE_RATE = 16000
PRE_ROLL_MS = 600
INTERIM_EVERY_S = 0.2


PREWARM_DECODERS = 4  # built at warm start; more are built (off the event loop) as concurrent calls need them


class SphinxDecoderPool:
    """Decoders for the agent's grammar (or the full English model), built ahead of the calls that use them.

    A grammar decoder with its small dictionary costs ~10 ms and a few MiB; one with the full English model
    ~0.3 s and ~90 MiB (its dictionary and language model are not shared between decoders). So a few are built
    at warm start and the rest on demand, in a thread; ended calls hand theirs back for the next call.
    """

    def __init__(self, grammar: Grammar | None, size: int):
        self._grammar = grammar
        self._free = [self._make() for _ in range(min(size, PREWARM_DECODERS))]
        self._lock = threading.Lock()

    @property
    def grammar(self) -> Grammar | None:
        return self._grammar

    def _make(self) -> Decoder:
        if self._grammar is None:
            return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        decoder = Decoder(samprate=SAMPLE_RATE, lm=None, dict=self._grammar.dictionary_path, loglevel="FATAL")
        decoder.add_jsgf_string("expected", self._grammar.jsgf)
        decoder.activate_search("expected")
        return decoder

    def acquire(self) -> Decoder:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._make()

    async def acquire_async(self) -> Decoder:
        with self._lock:
            if self._free:
                return self._free.pop()
        return await asyncio.to_thread(self._make)

    def release(self, decoder: Decoder) -> None:
        with self._lock:
            self._free.append(decoder)


class PocketSphinxSTTService(STTService):
    def __init__(self, pool: SphinxDecoderPool, **kwargs):
        # The final transcript is pushed at the VAD stop itself, so turn strategies need not wait for it.
        super().__init__(sample_rate=SAMPLE_RATE, ttfs_p99_latency=0.0,
                         settings=STTSettings(model="pocketsphinx", language=None), **kwargs)
        self._pool = pool
        self._decoder: Decoder | None = None
        self._in_utterance = False
        self._pre_roll: collections.deque[bytes] = collections.deque()
        self._pre_roll_bytes = 0
        self._last_interim_at = 0.0
        self._last_interim = ""

    def can_generate_metrics(self) -> bool:
        return True

    async def start(self, frame):
        await super().start(frame)
        if self._decoder is None:
            self._decoder = await self._pool.acquire_async()

    async def stop(self, frame):
        await super().stop(frame)
        self._give_back()

    async def cancel(self, frame):
        await super().cancel(frame)
        self._give_back()

    async def cleanup(self):
        await super().cleanup()
        self._give_back()

    def _give_back(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return
        if self._in_utterance:
            decoder.end_utt()
            self._in_utterance = False
        self._pool.release(decoder)

    @traced_stt  # an stt span per utterance, as Pipecat's cloud STTs make (its transcript only when recorded)
    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        if self._decoder is None:
            return
        if not self._in_utterance:
            self._pre_roll.append(audio)
            self._pre_roll_bytes += len(audio)
            while self._pre_roll_bytes > SAMPLE_RATE * 2 * PRE_ROLL_MS // 1000:
                self._pre_roll_bytes -= len(self._pre_roll.popleft())
            return
        self._decoder.process_raw(audio, False, False)
        now = time.monotonic()
        if now - self._last_interim_at >= INTERIM_EVERY_S:
            self._last_interim_at = now
            text = self._hypothesis()
            if text and text != self._last_interim:
                self._last_interim = text
                yield InterimTranscriptionFrame(text=text, user_id=self._user_id, timestamp=time_now_iso8601())

    def _hypothesis(self) -> str:
        hyp = self._decoder.hyp() if self._decoder is not None else None
        return hyp.hypstr.strip() if hyp is not None else ""

    async def _handle_vad_user_started_speaking(self, frame):
        await super()._handle_vad_user_started_speaking(frame)
        if self._decoder is None or self._in_utterance:
            return
        self._decoder.start_utt()
        self._in_utterance = True
        self._last_interim = ""
        self._last_interim_at = time.monotonic()
        for chunk in self._pre_roll:
            self._decoder.process_raw(chunk, False, False)
        self._pre_roll.clear()
        self._pre_roll_bytes = 0

    async def _handle_vad_user_stopped_speaking(self, frame):
        await super()._handle_vad_user_stopped_speaking(frame)
        if self._decoder is None or not self._in_utterance:
            return
        self._decoder.end_utt()
        self._in_utterance = False
        text = self._hypothesis()
        if text:
            await self.push_frame(TranscriptionFrame(text=text, user_id=self._user_id, timestamp=time_now_iso8601(),
                                                     finalized=True))
            await self.emit_stt_usage_metrics()
