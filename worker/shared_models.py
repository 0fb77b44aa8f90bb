"""The models every session of this process shares, loaded once at warm start.

Silero VAD and smart-turn v3 are ONNX models: the InferenceSession (weights, graph) is loaded once here; each
session gets a light analyzer that keeps only its own stream state (Silero's recurrent state, smart-turn's
audio buffer) and runs on the shared session. smart-turn costs ~85 ms per inference on this machine, so all
sessions' inferences go through one thread (serialised: two at once would only share the same cores slower).

Silero takes a batch (each row with its own recurrent state, results identical to one row at a time): with
`vad_batched` (worker setting, on by default) the windows every session hands over in one event-loop tick are
scored in one inference (SileroBatch). A batch of 8 windows costs about half of 8 single inferences here (issue
19), and no window waits longer than the tick it arrived in.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import onnxruntime
import structlog
from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn, SmartTurnParams
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState


def _single_thread_options() -> onnxruntime.SessionOptions:
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


ARRIVAL_WINDOW = 100  # windows (3.2 s) over which the arrival clock keeps its least-delayed anchor
GAP_S = 1.0  # audio this much later than the anchor means the stream paused, not that the loop was busy
VOICED_RMS = 300.0  # int16 RMS (about -40 dBFS): below it a window holds no audible voice
SILENCE_RMS = 30.0  # about -60 dBFS: line silence; such a window is not scored (Silero would say ~0 anyway)
SUBBLOCK = 160  # 10 ms at 16 kHz

log = structlog.get_logger("voxfleet.worker.shared_models")


class SileroBatch:
    """Scores every session's waiting Silero window in one inference per event-loop tick.

    A session's window joins the tick's batch and awaits its confidence; the batch runs as the loop's next
    callback (call_soon), so a window waits for the windows already in flight this tick and no longer. Each row
    carries its session's own recurrent state and 64-sample context (as SileroOnnxModel keeps them), and gets them
    back updated: the same numbers one inference per window gives.
    """

    CONTEXT = 64  # samples of the previous window Silero v5 prepends at 16 kHz

    def __init__(self, session: onnxruntime.InferenceSession):
        self._session = session
        self._pending: list[tuple[SileroOnnxModel, np.ndarray, asyncio.Future]] = []
        self._rate = np.array(16000, dtype=np.int64)
        self.inferences = 0
        self.windows = 0

    def score(self, model: SileroOnnxModel, window: np.ndarray) -> asyncio.Future:
        """`window`: 512 float32 samples in [-1, 1]; the future holds Silero's confidence."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._run)
        self._pending.append((model, window, future))
        return future

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        for model, _, _ in pending:
            if model._context.shape[1] != self.CONTEXT:  # fresh or just reset
                model._context = np.zeros((1, self.CONTEXT), dtype=np.float32)
        rows = np.concatenate([np.concatenate((model._context[0], window))[None, :]
                               for model, window, _ in pending])
        states = np.concatenate([model._state for model, _, _ in pending], axis=1)
        try:
            confidences, states = self._session.run(None, {"input": rows, "state": states, "sr": self._rate})
        except Exception as error:  # every waiting session hears of it (and scores the window 0)
            log.error("silero batch inference failed", windows=len(pending),
                      error=f"{type(error).__name__}: {error}"[:300])
            for _, _, future in pending:
                if not future.done():
                    future.set_exception(error)
            return
        self.inferences += 1
        self.windows += len(pending)
        for row, (model, _, future) in enumerate(pending):
            model._state = states[:, row:row + 1, :]
            model._context = rows[row:row + 1, -self.CONTEXT:]
            model._last_sr, model._last_batch_size = 16000, 1
            if not future.done():  # its session may have been cancelled meanwhile
                future.set_result(float(confidences[row, 0]))


class SharedSileroVAD(SileroVADAnalyzer):
    """Silero VAD over a shared InferenceSession, with this stream's own state.

    Runs inline on the event loop (one 32 ms window is ~0.2 ms of CPU; a thread hop per frame costs more) and
    remembers when the caller's voice was last heard, which is where the worker's TTFA estimate starts: the
    end of the last audible 10 ms inside the last window Silero judged voiced. Silero alone lags by a window
    or two (its recurrent state stays confident over the silence after a word, ~60 ms here), and a 32 ms
    window alone is too coarse for a figure a caller checks to 50 ms. Times come from an arrival clock: LiveKit
    delivers caller audio continuously in real time, so a window's arrival is the least-delayed
    `now - samples so far / rate` seen recently plus its sample position; a busy event loop that analyses a
    window late does not make the caller's speech look later than it reached the worker.
    """

    def __init__(self, session: onnxruntime.InferenceSession, *, params: VADParams,
                 batch: SileroBatch | None = None):
        VADAnalyzer.__init__(self, sample_rate=16000, params=params)
        self._batch = batch  # None: one inline inference per window
        self._unscored = b""  # batched: audio not yet a whole window
        self._batched_confidence: float | None = None  # batched: the score of the window being analysed
        self._window_silent: bool | None = None  # batched: whether that window is line silence
        model = SileroOnnxModel.__new__(SileroOnnxModel)
        model.session = session
        model.sample_rates = [8000, 16000]
        model.reset_states()
        self._model = model
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self.last_voiced_at = 0.0  # time.monotonic() of the last window judged voiced
        self._samples = 0
        self._anchors: deque[float] = deque(maxlen=ARRIVAL_WINDOW)
        self._reset_in_silence = False

    async def analyze_audio(self, buffer: bytes) -> VADState:
        if self._batch is None:
            return self._run_analyzer(buffer)
        # Window by window: each is scored in the tick's batch (unless it is line silence), then goes through
        # Pipecat's state machine (_run_analyzer), whose voice_confidence() picks the score up.
        self._unscored += buffer
        size = self._vad_frames_num_bytes
        while len(self._unscored) >= size:
            window, self._unscored = self._unscored[:size], self._unscored[size:]
            samples = np.frombuffer(window, dtype=np.int16).astype(np.float32)
            self._window_silent = _line_silence(samples)  # voice_confidence() reads it instead of measuring again
            if not self._window_silent:
                try:
                    self._batched_confidence = await self._batch.score(self._model, samples / 32768.0)
                except Exception:  # as Pipecat's inline Silero does: a failed inference scores 0 (logged once
                    self._batched_confidence = 0.0  # per batch, in SileroBatch._run)
            self._run_analyzer(window)
            self._batched_confidence = self._window_silent = None
        return self._vad_state

    def _score(self, buffer: bytes) -> float:
        """Silero's confidence for this window: from the tick's batch, or one inline inference."""
        if self._batched_confidence is None:
            return float(np.ravel(super().voice_confidence(buffer))[0])  # Silero hands back a 1-element array
        self._maybe_reset_model(self._batched_confidence)
        return self._batched_confidence

    def _arrived_at(self, samples: int) -> float:
        """Arrival time (monotonic) of the end of the window just handed to the VAD."""
        self._samples += samples
        position = self._samples / self.sample_rate
        anchor = time.monotonic() - position
        if self._anchors and anchor - min(self._anchors) > GAP_S:
            self._anchors.clear()
        self._anchors.append(anchor)
        return min(self._anchors) + position

    def voice_confidence(self, buffer) -> float:
        samples = np.frombuffer(buffer, dtype=np.int16).astype(np.float32)
        arrived = self._arrived_at(len(samples))
        if self._window_silent if self._window_silent is not None else _line_silence(samples):
            # Line silence costs no inference. Between turns the model restarts as after Silero's own resets
            # (once); inside speech its state is kept for the next voiced window.
            if self._vad_state == VADState.QUIET and not self._reset_in_silence:
                self._model.reset_states()
                self._reset_in_silence = True
            return 0.0
        self._reset_in_silence = False
        confidence = self._score(buffer)
        if confidence >= self.params.confidence:
            blocks = len(samples) // SUBBLOCK
            loud = np.flatnonzero(np.sqrt(np.mean(
                samples[:blocks * SUBBLOCK].reshape(blocks, SUBBLOCK) ** 2, axis=1)) >= VOICED_RMS)
            if loud.size:
                after_voice = (len(samples) - (loud[-1] + 1) * SUBBLOCK) / self.sample_rate
                self.last_voiced_at = arrived - after_voice
        return confidence


def _line_silence(samples: np.ndarray) -> bool:
    """`samples`: float32. A dot product: np.mean(samples ** 2) cost 6 % of the worker's main thread (profile at
    8 calls, issue 19), most of it temporaries and numpy's reduction set-up on 512 values."""
    return float(np.dot(samples, samples)) < SILENCE_RMS ** 2 * len(samples)


class SharedSmartTurn(LocalSmartTurnAnalyzerV3):
    """smart-turn v3 over the shared InferenceSession; inferences queue on the shared single thread."""

    def __init__(self, session: onnxruntime.InferenceSession, executor: ThreadPoolExecutor, *,
                 params: SmartTurnParams):
        BaseSmartTurn.__init__(self, sample_rate=16000, params=params)
        self._session = session
        self._log_data = False
        self._shared_executor = executor

    @property
    def _model_executor(self) -> ThreadPoolExecutor:
        return self._shared_executor

    async def cleanup(self):
        # The executor belongs to the process, not to this session.
        self._audio_buffer = []


class SharedModels:
    """Loaded once per process; `vad()` and `smart_turn()` hand each session its own light analyzer."""

    def __init__(self, *, with_smart_turn: bool, batched_vad: bool = False):
        started = time.perf_counter()
        self.silero = onnxruntime.InferenceSession(
            str(resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")),
            providers=["CPUExecutionProvider"], sess_options=_single_thread_options())
        self.silero_batch = SileroBatch(self.silero) if batched_vad else None
        self.smart_turn_session: onnxruntime.InferenceSession | None = None
        self.smart_turn_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        if with_smart_turn:
            self.smart_turn_session = onnxruntime.InferenceSession(
                str(resources.files("pipecat.audio.turn.smart_turn.data").joinpath("smart-turn-v3.2-cpu.onnx")),
                providers=["CPUExecutionProvider"], sess_options=_single_thread_options())
        self.load_seconds = time.perf_counter() - started

    def vad(self, params: VADParams) -> SharedSileroVAD:
        return SharedSileroVAD(self.silero, params=params, batch=self.silero_batch)

    def smart_turn(self, params: SmartTurnParams) -> SharedSmartTurn:
        if self.smart_turn_session is None:
            raise RuntimeError("smart-turn was not loaded at warm start (the agent uses speech-timeout)")
        return SharedSmartTurn(self.smart_turn_session, self.smart_turn_executor, params=params)

    def warm_up(self) -> None:
        """One inference each, so the first caller does not pay ONNX's lazy initialisation."""
        vad = self.vad(VADParams())
        vad.set_sample_rate(16000)
        # Not silence: a line-silent window is never scored, and ONNX's first run would land on the first caller.
        vad.voice_confidence(np.full(512, 1000, dtype=np.int16).tobytes())
        if self.smart_turn_session is not None:
            turn = self.smart_turn(SmartTurnParams())
            turn._predict_endpoint(np.zeros(16000, dtype=np.float32))
