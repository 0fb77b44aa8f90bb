"""Serve the provider fakes from their own process (so their CPU is not the measured process's):

    python -m tests.fakes --llm-ttft-ms 200 --stt-final-delay-ms 150 --tts-ttfb-ms 120 --reply "Sure."

prints one JSON line {"openai": url, "deepgram": url, "cartesia": url, "pipeline": {...}, "env": {...}} and serves
until stdin closes or the process is terminated.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from tests.fakes.openai_server import Script
from tests.fakes.providers import start_fake_providers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm-ttft-ms", type=float, default=0.0)
    parser.add_argument("--llm-token-delay-ms", type=float, default=0.0)
    parser.add_argument("--stt-final-delay-ms", type=float, default=0.0)
    parser.add_argument("--tts-ttfb-ms", type=float, default=0.0)
    parser.add_argument("--transcript", action="append", help="what the fake STT hears (repeat for a sequence)")
    parser.add_argument("--reply", default="Hello! How can I help you today?", help="what the fake LLM answers")
    args = parser.parse_args(argv)
    fakes = start_fake_providers(llm_ttft_ms=args.llm_ttft_ms, llm_token_delay_ms=args.llm_token_delay_ms,
                                 stt_final_delay_ms=args.stt_final_delay_ms, tts_ttfb_ms=args.tts_ttfb_ms,
                                 transcripts=args.transcript, script=Script(reply=args.reply))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print(json.dumps({**fakes.urls(), "pipeline": fakes.pipeline_spec(), "env": fakes.secret_env()}), flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    fakes.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
