"""Streaming TTS on eSpeak NG: each sentence the aggregator hands over is synthesised (~1 ms) and streamed out
in small frames, resampled once to the pipeline's output rate."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from pipecat.audio.utils import create_file_resampler
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.tracing.service_decorators import traced_tts

from voxfleet.worker.providers.espeak_voice import ESpeakVoice

FRAME_MS = 40  # matches the output transport's default chunk, so no re-chunking downstream


class ESpeakTTSService(TTSService):
    def __init__(self, *, voice: str = "en-us", rate: int = 175, **kwargs):
        super().__init__(push_start_frame=True, push_stop_frames=True,
                         settings=TTSSettings(model=None, voice=voice, language=None), **kwargs)
        self._engine = ESpeakVoice.shared()
        self._voice = voice
        self._rate = rate
        self._resampler = create_file_resampler()

    def can_generate_metrics(self) -> bool:
        return True

    @traced_tts  # a tts span per sentence, as Pipecat's cloud voices make (its text only when the agent records)
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        try:
            await self.start_tts_usage_metrics(text)
            pcm = b"".join(self._engine.synthesize(text, voice=self._voice, rate=self._rate))
            audio = await self._resampler.resample(pcm, self._engine.sample_rate, self.sample_rate)
            await self.stop_ttfb_metrics()
            step = self.sample_rate * FRAME_MS // 1000 * 2
            for offset in range(0, len(audio), step):
                yield TTSAudioRawFrame(audio=audio[offset:offset + step], sample_rate=self.sample_rate,
                                       num_channels=1, context_id=context_id)
        except ValueError as error:  # an unknown voice: the spec's mistake, said plainly
            yield ErrorFrame(error=f"eSpeak TTS: {error}")
        finally:
            await self.stop_ttfb_metrics()
