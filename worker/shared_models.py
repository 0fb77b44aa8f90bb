"""The models every session of this process shares, loaded once at warm start.

Silero VAD and smart-turn v3 are ONNX models: the InferenceSession (weights, graph) is loaded once here; each
session gets a light analyzer that keeps only its own stream state (Silero's recurrent state, smart-turn's
audio buffer) and runs on the shared session. smart-turn costs ~85 ms per inference on this machine, so all
sessions' inferences go through one thread (serialised: two at once would only share the same cores slower).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import onnxruntime
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

    def __init__(self, session: onnxruntime.InferenceSession, *, params: VADParams):
        VADAnalyzer.__init__(self, sample_rate=16000, params=params)
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
        return self._run_analyzer(buffer)

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
        if float(np.sqrt(np.mean(samples ** 2))) < SILENCE_RMS:
            # Line silence costs no inference. Between turns the model restarts as after Silero's own resets
            # (once); inside speech its state is kept for the next voiced window.
            if self._vad_state == VADState.QUIET and not self._reset_in_silence:
                self._model.reset_states()
                self._reset_in_silence = True
            return 0.0
        self._reset_in_silence = False
        confidence = super().voice_confidence(buffer)
        if confidence >= self.params.confidence:
            blocks = len(samples) // SUBBLOCK
            loud = np.flatnonzero(np.sqrt(np.mean(
                samples[:blocks * SUBBLOCK].reshape(blocks, SUBBLOCK) ** 2, axis=1)) >= VOICED_RMS)
            if loud.size:
                after_voice = (len(samples) - (loud[-1] + 1) * SUBBLOCK) / self.sample_rate
                self.last_voiced_at = arrived - after_voice
        return confidence


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

    def __init__(self, *, with_smart_turn: bool):
        started = time.perf_counter()
        self.silero = onnxruntime.InferenceSession(
            str(resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")),
            providers=["CPUExecutionProvider"], sess_options=_single_thread_options())
        self.smart_turn_session: onnxruntime.InferenceSession | None = None
        self.smart_turn_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        if with_smart_turn:
            self.smart_turn_session = onnxruntime.InferenceSession(
                str(resources.files("pipecat.audio.turn.smart_turn.data").joinpath("smart-turn-v3.2-cpu.onnx")),
                providers=["CPUExecutionProvider"], sess_options=_single_thread_options())
        self.load_seconds = time.perf_counter() - started

    def vad(self, params: VADParams) -> SharedSileroVAD:
        return SharedSileroVAD(self.silero, params=params)

    def smart_turn(self, params: SmartTurnParams) -> SharedSmartTurn:
        if self.smart_turn_session is None:
            raise RuntimeError("smart-turn was not loaded at warm start (the agent uses speech-timeout)")
        return SharedSmartTurn(self.smart_turn_session, self.smart_turn_executor, params=params)

    def warm_up(self) -> None:
        """One inference each, so the first caller does not pay ONNX's lazy initialisation."""
        vad = self.vad(VADParams())
        vad.set_sample_rate(16000)
        vad.voice_confidence(np.zeros(512, dtype=np.int16).tobytes())
        if self.smart_turn_session is not None:
            turn = self.smart_turn(SmartTurnParams())
            turn._predict_endpoint(np.zeros(16000, dtype=np.float32))
