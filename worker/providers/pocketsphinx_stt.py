"""Streaming offline STT on PocketSphinx, driven by the pipeline's VAD.

Audio is decoded only while the caller speaks: a short pre-roll ring keeps the audio before the VAD
confirmed speech, the utterance starts with it, streams while voiced (interim hypotheses a few times a
second, for min-words barge-in), and ends at the VAD stop with one final transcript. Decoders are built at
warm start, one pair per slot, and reused: no model is loaded per call.

Two things make a grammar decoder usable on a live line (measured in worker/README.md, Understanding):
- **Cepstral mean from the utterance itself.** PocketSphinx's `batch` CMN only updates on a whole utterance
  handed over at once, so streamed audio was normalised with the model's fixed prior (40,3,-1,0...) while eSpeak
  speech through a room has c0 ~50-60 and c3/c7 ~+/-30: "seven three oh one" came out "two three oh one". Each
  utterance now waits until its opening (pre-roll plus CMN_WINDOW_MS) is in, takes that audio's mean with a
  feature-only pass (no search, ~5 ms), and then decodes as before.
- **An honest no for speech outside the grammar.** The grammar can only say its own words, so chatter came out
  as keywords and digits ("order eight oh three two"): a tool call. A phone-loop decoder (any phone sequence) hears
  the same audio; where the grammar's best path scores far below the phone loop's per frame, the grammar is
  forcing words onto speech it does not hold, and the final transcript is REJECTED instead.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from pipecat.frames.frames import Frame, InterimTranscriptionFrame, TranscriptionFrame
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601
from pipecat.utils.tracing.service_decorators import traced_stt
import numpy as np
from pocketsphinx import Decoder, get_model_path

from voxfleet.worker.providers.sphinx_grammar import Grammar

SAMPLE_RATE = 16000
BLOCK = SAMPLE_RATE // 100  # 10 ms, a decoder frame
PRE_ROLL_MS = 600
INTERIM_EVERY_S = 0.2
# Audio after the VAD start that the cepstral mean is taken over before decoding begins (the pre-roll, which holds
# the VAD's own start delay of speech, comes on top): interims start this much later. 200, 400 and 700 ms gave
# the same intent accuracy on the corpus's tuning lines within a line or two.
CMN_WINDOW_MS = 400
# Grammar path score minus phone-loop path score, per frame of the grammar's words (PocketSphinx log units), below
# which the grammar's words are taken as forced. Tuned on the corpus's tuning lines through the worker's path
# (bench/recognition_bench.py; mean intent accuracy over the two voices at -12/-16/-20/-24: 0.75/0.88/0.71/0.79,
# the spread is the figures' noise as much as the threshold's). Real order lines in a room scored +5 to +12.
REJECT_BELOW = -16.0
# The final transcript of a rejected utterance: no intent keyword, so the scripted LLM says its noMatch lines,
# and a transcript reader sees that something was said and not understood.
REJECTED = "[inaudible]"
# Speech with no path through the grammar is REJECTED only from this long (10 ms blocks louder than VOICED_RMS;
# the phone loop is no measure of it, it lays SIL over much of such speech): "mhm" or "hmm" is ~0.3 s, an
# off-script sentence well over a second.
MIN_REJECTED_BLOCKS = 80
VOICED_RMS = 300  # ~-40 dBFS; eSpeak's speech through a room is ~3,000
PHONE_LOOP = os.path.join(get_model_path(), "en-us", "en-us-phone.lm.bin")

PREWARM_DECODERS = 4  # built at warm start; more are built (off the event loop) as concurrent calls need them


@dataclass
class SphinxDecoders:
    """One slot's decoders: the grammar (or full English model) and, with a grammar, the phone loop."""

    words: Decoder
    phones: Decoder | None = None


class SphinxDecoderPool:
    """Decoders for the agent's grammar (or the full English model), built ahead of the calls that use them.

    A grammar decoder with its small dictionary costs ~10 ms and a few MiB; one with the full English model
    ~0.3 s and ~90 MiB (its dictionary and language model are not shared between decoders). So a few are built
    at warm start and the rest on demand, in a thread; ended calls hand theirs back for the next call.
    """

    def __init__(self, grammar: Grammar | None, size: int, *, reject_off_script: bool = True):
        self._grammar = grammar
        # The phone loop costs ~3.5x the grammar's decode (~90 ms of CPU per second of caller speech, measured
        # 2026-12-04) and, like all decoding here, runs on the event loop (PocketSphinx holds the GIL): with three
        # other calls talking, one call's barge-in stop went from p95 207 to 383 ms. So an agent asks for it.
        self._reject_off_script = reject_off_script
        self._free = [self._make() for _ in range(min(size, PREWARM_DECODERS))]
        self._lock = threading.Lock()

    @property
    def grammar(self) -> Grammar | None:
        return self._grammar

    def _make(self) -> SphinxDecoders:
        if self._grammar is None:
            return SphinxDecoders(Decoder(samprate=SAMPLE_RATE, loglevel="FATAL"))
        words = Decoder(samprate=SAMPLE_RATE, lm=None, dict=self._grammar.dictionary_path, loglevel="FATAL")
        words.add_jsgf_string("expected", self._grammar.jsgf)
        words.activate_search("expected")
        if not self._reject_off_script:
            return SphinxDecoders(words)
        phones = Decoder(samprate=SAMPLE_RATE, lm=None, dict=self._grammar.dictionary_path, loglevel="FATAL")
        phones.add_allphone_file("phones", PHONE_LOOP)
        phones.activate_search("phones")
        return SphinxDecoders(words, phones)

    def acquire(self) -> SphinxDecoders:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._make()

    async def acquire_async(self) -> SphinxDecoders:
        with self._lock:
            if self._free:
                return self._free.pop()
        return await asyncio.to_thread(self._make)

    def release(self, decoders: SphinxDecoders) -> None:
        with self._lock:
            self._free.append(decoders)


class Utterance:
    """One utterance through a slot's decoders, fed as the room hands audio over (any chunk size).

    `feed` returns the grammar's hypothesis so far (for interims; "" until decoding began), `finish` the final
    transcript: the grammar's words, REJECTED when the phone loop explains the audio far better (or the grammar
    has no path through a sentence of speech), or "" (silence, a short wordless sound).
    The bench runs the corpus through this same class, so its figures are the worker's path.
    """

    def __init__(self, decoders: SphinxDecoders, pre_roll: bytes = b""):
        self._decoders = decoders
        self._opening = bytearray(pre_roll)
        self._window = len(pre_roll) + SAMPLE_RATE * 2 * CMN_WINDOW_MS // 1000
        self._decoding = False
        self._voiced_blocks = _voiced_blocks(pre_roll)
        self.score_per_frame: float | None = None  # grammar minus phone loop per spoken frame, set by finish

    def _all(self) -> list[Decoder]:
        return [d for d in (self._decoders.words, self._decoders.phones) if d is not None]

    def _begin(self) -> None:
        opening = bytes(self._opening)
        self._opening = bytearray()
        words = self._decoders.words
        # Feature-only pass (no search): PocketSphinx's batch CMN over the opening becomes the decoder's mean.
        # Digital silence (exact zeros: a synthetic caller, a codec's silence) has no spectrum, only the log
        # floor, and would drag the mean by however much of it the opening holds; it is left out of the mean.
        words.start_utt()
        words.process_raw(_without_digital_silence(opening) or opening, True, True)
        words.end_utt()
        cmn = words.get_cmn()
        for decoder in self._all():
            if decoder is not words:
                decoder.set_cmn(cmn)
            decoder.start_utt()
            decoder.process_raw(opening, False, False)
        self._decoding = True

    def feed(self, audio: bytes) -> str:
        self._voiced_blocks += _voiced_blocks(audio)
        if not self._decoding:
            self._opening += audio
            if len(self._opening) < self._window:
                return ""
            self._begin()
        else:
            for decoder in self._all():
                decoder.process_raw(audio, False, False)
        return self.hypothesis()

    def hypothesis(self) -> str:
        return _best(self._decoders.words) if self._decoding else ""

    def finish(self) -> str:
        if not self._decoding:
            if not self._opening:
                return ""
            self._begin()
        for decoder in self._all():
            decoder.end_utt()
        self._decoding = False
        words, phones = self._decoders.words, self._decoders.phones
        text = _best(words)
        if phones is None:
            return text
        if not text:
            # No path through the grammar at all. A sentence of it is said-and-not-understood (silence would leave
            # the caller unanswered); a short sound ("mhm", a cough) stays wordless, so over the agent it is no
            # interruption (barge_in.py resumes the reply).
            return REJECTED if self._voiced_blocks >= MIN_REJECTED_BLOCKS else ""
        # Per frame of the words the grammar heard: leading and trailing silence score alike in both decoders
        # and would only dilute the difference by however long the VAD's pre-roll and tail were.
        spoken = sum(seg.end_frame - seg.start_frame + 1 for seg in words.seg() if not seg.word.startswith(("<", "[")))
        self.score_per_frame = (_path_score(words) - _path_score(phones)) / max(1, spoken)
        if self.score_per_frame >= REJECT_BELOW:
            return text
        # Forced words: a sentence of them is said-and-not-understood; a short sound stays wordless, as above
        # (a "mhm" whose few frames the grammar forced a word onto must not interrupt the agent either).
        return REJECTED if self._voiced_blocks >= MIN_REJECTED_BLOCKS else ""

    def abandon(self) -> None:
        """A call ending mid-utterance: leave the decoders ready for the next call."""
        if self._decoding:
            for decoder in self._all():
                decoder.end_utt()
            self._decoding = False


def _best(decoder: Decoder) -> str:
    hyp = decoder.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


def _voiced_blocks(pcm: bytes) -> int:
    samples = np.frombuffer(pcm[:len(pcm) // 2 * 2], dtype=np.int16)
    blocks = samples[:len(samples) // BLOCK * BLOCK].reshape(-1, BLOCK).astype(np.float32)
    return int(np.count_nonzero(np.einsum("ij,ij->i", blocks, blocks) > VOICED_RMS ** 2 * BLOCK))


def _without_digital_silence(pcm: bytes) -> bytes:
    samples = np.frombuffer(pcm[:len(pcm) // 2 * 2], dtype=np.int16)
    blocks = samples[:len(samples) // BLOCK * BLOCK].reshape(-1, BLOCK)
    return blocks[blocks.any(axis=1)].tobytes()


def _path_score(decoder: Decoder) -> float:
    """The best path's score in the decoder's log units (the bindings hand it over exponentiated)."""
    hyp = decoder.hyp()
    return float(decoder.get_logmath().log(hyp.score)) if hyp is not None and hyp.score > 0 else float("-inf")


class PocketSphinxSTTService(STTService):
    def __init__(self, pool: SphinxDecoderPool, **kwargs):
        # The final transcript is pushed at the VAD stop itself, so turn strategies need not wait for it.
        super().__init__(sample_rate=SAMPLE_RATE, ttfs_p99_latency=0.0,
                         settings=STTSettings(model="pocketsphinx", language=None), **kwargs)
        self._pool = pool
        self._decoders: SphinxDecoders | None = None
        self._utterance: Utterance | None = None
        self._pre_roll: collections.deque[bytes] = collections.deque()
        self._pre_roll_bytes = 0
        self._last_interim_at = 0.0
        self._last_interim = ""

    def can_generate_metrics(self) -> bool:
        return True

    async def start(self, frame):
        await super().start(frame)
        if self._decoders is None:
            self._decoders = await self._pool.acquire_async()

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
        decoders, self._decoders = self._decoders, None
        if decoders is None:
            return
        if self._utterance is not None:
            self._utterance.abandon()
            self._utterance = None
        self._pool.release(decoders)

    @traced_stt  # an stt span per utterance, as Pipecat's cloud STTs make (its transcript only when recorded)
    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        if self._decoders is None:
            return
        if self._utterance is None:
            self._pre_roll.append(audio)
            self._pre_roll_bytes += len(audio)
            while self._pre_roll_bytes > SAMPLE_RATE * 2 * PRE_ROLL_MS // 1000:
                self._pre_roll_bytes -= len(self._pre_roll.popleft())
            return
        text = self._utterance.feed(audio)
        now = time.monotonic()
        if now - self._last_interim_at >= INTERIM_EVERY_S:
            self._last_interim_at = now
            if text and text != self._last_interim:
                self._last_interim = text
                yield InterimTranscriptionFrame(text=text, user_id=self._user_id, timestamp=time_now_iso8601())

    async def _handle_vad_user_started_speaking(self, frame):
        await super()._handle_vad_user_started_speaking(frame)
        if self._decoders is None or self._utterance is not None:
            return
        self._utterance = Utterance(self._decoders, b"".join(self._pre_roll))
        self._last_interim = ""
        self._last_interim_at = time.monotonic()
        self._pre_roll.clear()
        self._pre_roll_bytes = 0

    async def _handle_vad_user_stopped_speaking(self, frame):
        await super()._handle_vad_user_stopped_speaking(frame)
        if self._decoders is None or self._utterance is None:
            return
        utterance, self._utterance = self._utterance, None
        text = utterance.finish()
        if text:
            await self.push_frame(TranscriptionFrame(text=text, user_id=self._user_id, timestamp=time_now_iso8601(),
                                                     finalized=True))
            await self.emit_stt_usage_metrics()
