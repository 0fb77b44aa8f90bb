"""Issue 19: the Deepgram websocket without permessage-deflate (raw PCM barely compresses; deflating it cost half
of the worker's websocket send), unless the worker setting asks for it. Judged at the real wire: what the client
offered in its handshake to the Deepgram fake, and that the transcript still arrives."""

from __future__ import annotations

from pipecat.frames.frames import ErrorFrame, InputAudioRawFrame, TranscriptionFrame
from pipecat.tests.utils import SleepFrame, run_test

from tests.fakes.cartesia_server import speak
from tests.fakes.deepgram_server import start_fake_deepgram
from tests.worker.test_cloud_providers import PROVIDER_KEY, _stage, context  # noqa: F401 (fixture)
from voxfleet.api.voiceagent import SttStage
from voxfleet.worker.providers.cloud import deepgram_stt

PHRASE = "what is the weather in paris"


async def transcribe_and_offer(context) -> tuple[list[str], str, list]:
    """Transcribes one question through the fake; returns the transcripts, the handshake's offered extensions,
    and any error frames."""
    fake = start_fake_deepgram(transcripts=[PHRASE], api_key=PROVIDER_KEY)
    try:
        stt = deepgram_stt(_stage(SttStage, provider="deepgram", baseUrl=fake.url), context)
        audio = speak("What is the weather in Paris?", 16000) + bytes(16000 * 2 * 7 // 10)
        chunk = 16000 * 2 * 32 // 1000
        frames = [InputAudioRawFrame(audio=audio[i:i + chunk], sample_rate=16000, num_channels=1)
                  for i in range(0, len(audio), chunk)]
        down, up = await run_test(stt, frames_to_send=[SleepFrame(sleep=0.3), *frames, SleepFrame(sleep=1.5)])
        offered = {name.lower(): value for name, value in fake.connections[0]["headers"].items()}
        return ([frame.text for frame in down if isinstance(frame, TranscriptionFrame)],
                offered.get("sec-websocket-extensions", ""), [f for f in up if isinstance(f, ErrorFrame)])
    finally:
        fake.stop()


async def test_deepgram_websocket_offers_no_compression_by_default(context) -> None:  # noqa: F811
    transcripts, extensions, errors = await transcribe_and_offer(context)
    print(f"deepgram handshake extensions offered: {extensions!r}; transcripts {transcripts}")
    assert transcripts == [PHRASE] and not errors
    assert "permessage-deflate" not in extensions


async def test_deepgram_websocket_compression_is_a_switch(context) -> None:  # noqa: F811
    context.settings = context.settings.model_copy(update={"stt_websocket_compression": True})
    transcripts, extensions, errors = await transcribe_and_offer(context)
    print(f"deepgram handshake extensions offered with the switch on: {extensions!r}")
    assert transcripts == [PHRASE] and not errors
    assert "permessage-deflate" in extensions
