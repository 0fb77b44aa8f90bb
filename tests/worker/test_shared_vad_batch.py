"""Issue 19: one Silero inference per event-loop tick for every session's window (SileroBatch). The batched VAD
must hear exactly what one inference per window hears, for several sessions speaking at once: the same confidences
and the same VAD states, window by window (each row of a batch carries its own session's state). And the
sessions' windows must really share inferences."""

from __future__ import annotations

import asyncio

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADParams

from tests.callers.caller_bot import synthesize
from voxfleet.worker.shared_models import SharedModels, SharedSileroVAD, SileroBatch

WINDOW_BYTES = 512 * 2
LINES = ["what are your opening hours", "no stop", "I would like to book a table for two", "goodbye"]


def call_audio(text: str, lead_s: float) -> bytes:
    """A caller's line between line silence and a little room noise, as 32 ms frames would bring it."""
    rng = np.random.default_rng(len(text))
    speech = synthesize(text).astype(np.int16)
    noise = (rng.standard_normal(int(16000 * 0.5)) * 200).astype(np.int16)  # audible hiss: scored, not skipped
    pcm = np.concatenate([np.zeros(int(16000 * lead_s), np.int16), noise, speech, np.zeros(16000 // 2, np.int16)])
    return pcm[:len(pcm) - len(pcm) % 512].tobytes()


async def heard_by(models: SharedModels, audio: bytes, record: list) -> None:
    vad = models.vad(VADParams(stop_secs=0.2))
    vad.set_sample_rate(16000)
    original = vad._score

    def recorded(window: bytes) -> float:  # the confidence Pipecat's state machine receives, window by window
        confidence = float(original(window))
        record.append(confidence)
        return confidence

    vad._score = recorded
    for offset in range(0, len(audio), WINDOW_BYTES):
        state = await vad.analyze_audio(audio[offset:offset + WINDOW_BYTES])
        record.append(state.name)


async def hear_all(models: SharedModels, calls: list[bytes]) -> list[list]:
    records: list[list] = [[] for _ in calls]
    await asyncio.gather(*(heard_by(models, audio, record) for audio, record in zip(calls, records)))
    return records


async def test_sessions_speaking_at_once_share_inferences_and_hear_exactly_the_same() -> None:
    calls = [call_audio(line, 0.1 * i) for i, line in enumerate(LINES)]  # eSpeak differs run to run: made once
    inline = await hear_all(SharedModels(with_smart_turn=False, batched_vad=False), calls)
    batched_models = SharedModels(with_smart_turn=False, batched_vad=True)
    batched = await hear_all(batched_models, calls)
    batch = batched_models.silero_batch
    print(f"batched Silero: {batch.windows} windows scored in {batch.inferences} inferences "
          f"({batch.windows / batch.inferences:.2f} windows per inference, {len(LINES)} sessions)")
    for one in inline:
        states = [entry for entry in one if isinstance(entry, str)]
        assert "SPEAKING" in states and states[-1] == "QUIET"  # each line was heard as speech, and its end
    assert batched == inline
    assert batch.inferences < batch.windows / 2  # the sessions' windows really shared inferences


async def test_a_session_cancelled_while_its_window_waits_leaves_the_others_hearing() -> None:
    models = SharedModels(with_smart_turn=False, batched_vad=True)
    audio = call_audio(LINES[0], 0.0)  # noise from the first window: every window waits for a batch
    staying: list = []
    leaving = asyncio.create_task(heard_by(models, audio, []))
    listening = asyncio.create_task(heard_by(models, audio, staying))
    for _ in range(5):
        await asyncio.sleep(0)
    leaving.cancel()  # the call ends while its window is in the tick's batch
    await listening
    states = [entry for entry in staying if isinstance(entry, str)]
    assert leaving.cancelled() and "SPEAKING" in states and states[-1] == "QUIET"


async def test_a_failed_batch_inference_scores_zero_as_an_inline_one_does() -> None:
    # A real ONNX failure: the batch runs on smart-turn's session, whose inputs are not Silero's.
    models = SharedModels(with_smart_turn=True, batched_vad=True)
    broken = SileroBatch(models.smart_turn_session)
    vad = SharedSileroVAD(models.silero, params=VADParams(stop_secs=0.2), batch=broken)
    vad.set_sample_rate(16000)
    audio = call_audio(LINES[0], 0.0)
    states = {(await vad.analyze_audio(audio[i:i + WINDOW_BYTES])).name for i in range(0, len(audio), WINDOW_BYTES)}
    print(f"states heard with every batch failing: {sorted(states)}; inferences {broken.inferences}")
    assert states == {"QUIET"} and broken.inferences == 0
