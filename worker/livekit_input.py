"""Our LiveKit input path: caller audio read at 16 kHz mono in 32 ms frames (one Silero window), resampled once.

Pipecat's LiveKit input always reads 48 kHz 10 ms frames and resamples each one in Python; per-frame handling,
not the models, is what a voice worker spends its CPU on (ARCHITECTURE.md: 10 such pipelines fell behind on
this machine). livekit's native AudioStream resamples in Rust and hands us a third as many frames, each exactly
what the VAD consumes, and Pipecat's input resampler then has nothing to do (16 kHz in, 16 kHz out).
Everything else is Pipecat's LiveKitTransport unchanged, except its output (livekit_output.py).
"""

from __future__ import annotations

from livekit import rtc
from pipecat.transports.livekit.transport import LiveKitParams, LiveKitTransport, LiveKitTransportClient

from voxfleet.worker.livekit_output import PromptStopLiveKitOutput

INPUT_SAMPLE_RATE = 16000


class FramedLiveKitClient(LiveKitTransportClient):
    frame_size_ms = 32

    async def _async_on_track_subscribed(self, track: rtc.Track, publication: rtc.RemoteTrackPublication,
                                         participant: rtc.RemoteParticipant):
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            await super()._async_on_track_subscribed(track, publication, participant)
            return
        await self._close_audio_stream(participant.identity)
        self._audio_tracks[participant.identity] = track
        stream = rtc.AudioStream(track, sample_rate=INPUT_SAMPLE_RATE, num_channels=1,
                                 frame_size_ms=self.frame_size_ms)
        task = self._task_manager.create_task(self._process_audio_stream(stream, participant.identity),
                                              f"{self}::_process_audio_stream")
        self._audio_streams[participant.identity] = (stream, task)
        await self._callbacks.on_audio_track_subscribed(participant.identity)


class FramedLiveKitTransport(LiveKitTransport):
    def __init__(self, url: str, token: str, room_name: str, params: LiveKitParams, *, frame_size_ms: int = 32,
                 **kwargs):
        super().__init__(url, token, room_name, params, **kwargs)
        client = FramedLiveKitClient(url, token, room_name, self._params, self._client._callbacks, self.name)
        client.frame_size_ms = frame_size_ms
        self._client = client

    def output(self) -> PromptStopLiveKitOutput:
        if not self._output:  # ours, so a barge-in stops the agent's audio at once (livekit_output.py)
            self._output = PromptStopLiveKitOutput(self, self._client, self._params, name=self._output_name)
        return self._output
