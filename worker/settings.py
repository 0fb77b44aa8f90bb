"""Worker-only settings (env prefix VOXFLEET_): where the agent config is, where to listen, prices, audio paths.

Platform-wide settings (the worker token, outbound policy, log format) stay in voxfleet.api.settings; these are
the knobs only a worker process reads. The operator sets VOXFLEET_REGION, VOXFLEET_POD_NAME and
VOXFLEET_BIND_HOST (the pod IP) in every worker pod.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from voxfleet.api.labels import AGENT_CONFIG_KEY, AGENT_CONFIG_MOUNT
from voxfleet.api.settings import ENV_PREFIX


class PriceTable(BaseModel):
    """What usage costs, per provider, in the platform's currency. Missing providers cost 0 (offline ones)."""

    stt_per_minute: dict[str, float] = Field(default_factory=lambda: {"deepgram": 0.0043, "openai": 0.006})
    llm_input_per_million_tokens: dict[str, float] = Field(
        default_factory=lambda: {"openai": 0.15, "anthropic": 0.8})
    llm_output_per_million_tokens: dict[str, float] = Field(
        default_factory=lambda: {"openai": 0.6, "anthropic": 4.0})
    tts_per_million_characters: dict[str, float] = Field(
        default_factory=lambda: {"cartesia": 30.0, "elevenlabs": 100.0, "openai": 15.0})

    def cost(self, *, stt: str, llm: str, tts: str, stt_seconds: float, llm_input_tokens: int,
             llm_output_tokens: int, tts_characters: int) -> float:
        return (self.stt_per_minute.get(stt, 0.0) * stt_seconds / 60
                + self.llm_input_per_million_tokens.get(llm, 0.0) * llm_input_tokens / 1e6
                + self.llm_output_per_million_tokens.get(llm, 0.0) * llm_output_tokens / 1e6
                + self.tts_per_million_characters.get(tts, 0.0) * tts_characters / 1e6)


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    agent_config: Path = Field(default=Path(AGENT_CONFIG_MOUNT) / AGENT_CONFIG_KEY,
                               description="The rendered agent config (WorkerConfig JSON) this worker serves.")
    region: str = Field(default="local", description="Region this worker runs in (set by the operator).")
    pod_name: str = Field(default_factory=socket.gethostname, description="Pod name, reported in /v1/load.")
    bind_host: str = Field(default="127.0.0.1", description="Address of the control API (the pod IP in pods).")
    worker_port: int = Field(default=8080, ge=1, le=65535, description="Control API and /metrics port.")
    prices: PriceTable = Field(default_factory=PriceTable, description="Price table for the cost metric (JSON).")
    drain_grace_seconds: float = Field(default=5.0, ge=0,
                                       description="Extra time after maxSessionSeconds before a drain ends calls.")
    room_join_timeout_seconds: float = Field(default=20.0, gt=0,
                                             description="A session that cannot join its room by then ends.")
    audio_out_queue_ms: int = Field(default=200, ge=20, le=1000,
                                    description="LiveKit audio source queue; cleared on barge-in.")
    input_frame_ms: int = Field(default=32, ge=10, le=64,
                                description="Caller audio frame size read from LiveKit (32 ms = one Silero window).")
    vad_batched: bool = Field(default=True,
                              description="Score every session's Silero window of one event-loop tick in one batched"
                                          " inference (issue 19); false: one inference per session and window.")
    stt_websocket_compression: bool = Field(default=False,
                                            description="Offer permessage-deflate on the Deepgram websocket (raw PCM"
                                                        " barely compresses; deflating it costs CPU per frame).")
    memory_sample_seconds: float = Field(default=5.0, gt=0, le=300,
                                         description="How often the worker reads its resident memory for the"
                                                     " recycle limit (one /proc read).")
    termination_message_path: Path = Field(default=Path("/dev/termination-log"),
                                           description="Where the exit reason is written for the kubelet (only"
                                                       " when the file exists, as in a Kubernetes container).")
    ended_sessions_kept: int = Field(default=1000, ge=10, description="Ended sessions remembered for idempotency.")
    fault_injection: bool = Field(default=False,
                                  description="Tests only: a scripted intent named crash* raises inside the LLM; "
                                              "one named hang* makes it hold the CancelFrame when the call ends.")
    recovery_line: str = Field(default="Sorry, we were cut off. I am back. How can I help?",
                               description="Said instead of the greeting when a session is recovered.")
