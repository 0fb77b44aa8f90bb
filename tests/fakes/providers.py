"""All three provider fakes at once, with fixed latencies: what tests and the worker benchmark point a
VoiceAgent's pipeline at ("providers simulated at fixed latencies").

    fakes = start_fake_providers(llm_ttft_ms=200, stt_final_delay_ms=150, tts_ttfb_ms=120)
    spec["pipeline"] = fakes.pipeline_spec()      # deepgram -> openai-compatible -> cartesia, baseUrls set
    env.update(fakes.secret_env())                # the key every fake expects, under the worker's secret env
    ...
    fakes.stop()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.fakes.cartesia_server import FakeCartesia, start_fake_cartesia
from tests.fakes.deepgram_server import FakeDeepgram, start_fake_deepgram
from tests.fakes.openai_server import FakeOpenAI, Script, start_fake_openai
from voxfleet.api.common import SecretKeyRef
from voxfleet.api.worker_config import secret_env_name

FAKE_KEY_REF = SecretKeyRef(name="fake-provider-keys", key="api-key")
FAKE_KEY = "fake-provider-key"


@dataclass
class FakeProviders:
    openai: FakeOpenAI
    deepgram: FakeDeepgram
    cartesia: FakeCartesia

    def pipeline_spec(self, *, voice: str = "fake-voice") -> dict[str, Any]:
        """A VoiceAgent `spec.pipeline` (wire form) whose three stages use these fakes."""
        ref = FAKE_KEY_REF.model_dump()
        return {"stt": {"provider": "deepgram", "baseUrl": self.deepgram.url, "secretRef": ref},
                "llm": {"provider": "openai", "baseUrl": self.openai.url, "model": "fake-model", "secretRef": ref},
                "tts": {"provider": "cartesia", "baseUrl": self.cartesia.url, "voice": voice, "secretRef": ref}}

    def secret_env(self) -> dict[str, str]:
        return {secret_env_name(FAKE_KEY_REF): FAKE_KEY}

    def urls(self) -> dict[str, str]:
        return {"openai": self.openai.url, "deepgram": self.deepgram.url, "cartesia": self.cartesia.url}

    def stop(self) -> None:
        for fake in (self.openai, self.deepgram, self.cartesia):
            fake.stop()


def start_fake_providers(*, llm_ttft_ms: float = 0.0, llm_token_delay_ms: float = 0.0, stt_final_delay_ms: float = 0.0,
                         tts_ttfb_ms: float = 0.0, transcripts: list[str] | None = None,
                         script: Script | None = None) -> FakeProviders:
    return FakeProviders(
        openai=start_fake_openai(ttft_ms=llm_ttft_ms, token_delay_ms=llm_token_delay_ms, script=script,
                                 api_key=FAKE_KEY),
        deepgram=start_fake_deepgram(transcripts=transcripts, final_delay_ms=stt_final_delay_ms, api_key=FAKE_KEY),
        cartesia=start_fake_cartesia(ttfb_ms=tts_ttfb_ms, api_key=FAKE_KEY))
