"""voxfleet.worker: the warm worker process that runs one agent's Pipecat pipelines in LiveKit rooms.

Entry point `voxfleet worker` (main.py). Modules: settings (worker-only settings), worker_process (warm start,
dispatch, drain), control_api (the HTTP API), slots (the slot table), session (one call, end to end),
pipeline_builder (the pipeline, in one place), shared_models (Silero/smart-turn shared per process),
livekit_input (16 kHz 32 ms caller audio), input_audio_stop, tool_mute_strategy, tool_calls (tools wiring),
tools (the HTTP tool runner), providers/ (registry, offline and cloud providers), telemetry/.

Process model: sessions share the worker's event loop (decided by measurement)
-------------------------------------------------------------------------------
Each session runs in its own asyncio task with its own Pipecat WorkerRunner/PipelineWorker; everything
heavy is loaded once per process and shared (Silero and smart-turn ONNX sessions, one PocketSphinx decoder
per slot, eSpeak, the provider registry, pooled HTTP clients). Measured on this 2-core machine (shared with
other engineers' test runs, load average 10-30 while measuring), worker process only, callers silent
(idle listening is what most of a call is), after the optimisations below:

    4 concurrent sessions      CPU per session   RSS per session
    one event loop (chosen)         5.2 %           72 MiB (the process's ~260 MiB base / 4 + ~7 MiB each)
    one warm process per call       8.3 %          268 MiB
    in one loop: 1 session 9.0 %, 8 sessions 4.0 % (the per-process cost amortises)

A process per call pays the interpreter, Pipecat, ONNX runtime and a LiveKit FFI runtime per call: 3.7x the
memory and 1.6x the CPU here. Pipecat issues #764/#3378 (TTS lagging with parallel calls in one loop) come
from CPU-bound work blocking the loop; here the blocking work per frame is small and bounded (Silero 0.44 ms
per 32 ms window and none on line silence, eSpeak ~1 ms per sentence, PocketSphinx only while the caller
speaks, with small grammars), and smart-turn's 85 ms inferences run on one shared thread. `bench/worker_bench.py`
measures TTFA against concurrency (growth over 20 % or any underrun ends the sustained range) for both models.

Isolation: an exception anywhere in one session's pipeline ends that session only (Pipecat turns it into an
ErrorFrame; the session ends with reason `error` and frees its slot); a stuck provider times out inside its own
session; every way a session ends runs the same `finally` that frees the slot. What one loop cannot contain is
a native crash (a segfault in a C extension): it ends the pod's calls, and the gateway re-dispatches those
rooms to another warm worker, which says the recovery line (ARCHITECTURE.md, data flow step 7).

Density work (why idle sessions are cheap): caller audio is read from LiveKit at 16 kHz in 32 ms frames (one
Silero window, resampled once in livekit's native code) instead of Pipecat's 48 kHz 10 ms frames; the frames
stop at the user aggregator instead of queueing through the LLM, TTS and output processors; line silence
skips the Silero inference; Silero runs inline (no thread hop per frame); the turn-tracking observer runs only
with tracing. Before these: 14.2 % (1 session) and 10.0 % (4 sessions) of a core per session.

TTFA (what /metrics calls voxfleet_worker_ttfa_seconds) is estimated in-process from the end of the last
audible 10 ms inside the last window Silero judged voiced to the output transport's first audio frame of the
answer; see telemetry/conversation_observer.py.
"""
