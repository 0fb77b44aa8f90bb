"""`voxfleet call <agent>`: call an agent from the terminal, for people and scripts.

It starts a session through the gateway's sessions API with a tenant API key, joins the LiveKit room, speaks
each `--say` line (eSpeak NG, local) or `--wav` file in turn, prints what the agent said (when the agent
publishes transcripts) and the TTFA of each turn as the caller hears it, and saves the agent's audio with
`--save-audio`. Against a running `voxfleet dev` it needs no options but the agent: the gateway URL and the key
come from the dev platform's state. `--json` prints one machine-readable line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

from voxfleet.api.model_base import DNS_LABEL
from voxfleet.devplatform.dev_state import DEFAULT_GATEWAY, gateway_and_key

DEFAULT_LINE = "What are your opening hours?"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxfleet call", description="Call a voice agent through the gateway, speak, and time its answers.",
        epilog="Example: voxfleet call concierge --say 'what are your opening hours' --say 'goodbye'")
    parser.add_argument("agent", nargs="?", help="the VoiceAgent to call (omit with --list)")
    parser.add_argument("--gateway", default=None,
                        help=f"gateway URL (default: the running voxfleet dev's, else $VOXFLEET_GATEWAY_URL or "
                             f"{DEFAULT_GATEWAY})")
    parser.add_argument("--key", default=None, help="tenant API key (default: $VOXFLEET_API_KEY, else the running "
                                                    "voxfleet dev's key); prefer the variable: options show in ps")
    parser.add_argument("--say", action="append", default=[], metavar="TEXT",
                        help="a line to speak (eSpeak NG); repeat for more turns")
    parser.add_argument("--wav", action="append", default=[], type=Path, metavar="FILE",
                        help="a WAV file to play as one turn (after the --say lines); repeat for more")
    parser.add_argument("--voice", default="en-us", help="eSpeak voice for --say (default en-us)")
    parser.add_argument("--rate", type=int, default=175, help="speaking rate in words per minute (default 175)")
    parser.add_argument("--save-audio", type=Path, default=None, metavar="WAV",
                        help="write everything the agent said (16 kHz mono WAV)")
    parser.add_argument("--answer-timeout", type=float, default=20.0, help="seconds to wait for each answer")
    parser.add_argument("--json", action="store_true", help="print one JSON line with the turns and TTFAs at the end")
    parser.add_argument("--list", action="store_true", help="list the tenant's agents and exit")
    parser.add_argument("--dev-dir", type=Path, default=None, help="the voxfleet dev folder to read defaults from")
    return parser



def _say(text: str) -> None:
    print(text, flush=True)


def _progress(text: str, quiet: bool) -> None:
    if not quiet:
        print(f"[call] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    gateway, key = gateway_and_key(args.gateway, args.key, args.dev_dir)
    if not key:
        print("voxfleet call: no API key: pass --key or set VOXFLEET_API_KEY (voxfleet dev prints one)",
              file=sys.stderr)
        return 2
    from voxfleet.devplatform.sessions_client import GatewayClient, GatewayRefused, GatewayUnreachable

    if args.list:
        try:
            with GatewayClient(gateway, key) as client:
                agents = client.agents()
        except (GatewayRefused, GatewayUnreachable, ValueError) as error:
            print(f"voxfleet call: {error}", file=sys.stderr)
            return 1
        for agent in agents:
            status = agent.get("status") or {}
            print(f"{agent.get('name', '?'):<24} ready={'yes' if agent.get('ready') else 'no':<4} "
                  f"workers={status.get('readyWorkers', 0)} free={status.get('freeSlots', 0)}")
        return 0
    if not args.agent or not re.match(DNS_LABEL, args.agent) or len(args.agent) > 63:
        print("voxfleet call: name the agent to call (a DNS label like 'concierge'), or use --list", file=sys.stderr)
        return 2
    try:
        lines = _lines(args)
    except ValueError as error:
        print(f"voxfleet call: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_call(args, gateway, key, lines))
    except KeyboardInterrupt:
        return 130


def _lines(args):
    from voxfleet.devplatform import speech
    from voxfleet.devplatform.conversation import Line

    lines = [Line(text=text) for text in args.say if text.strip()]
    for path in args.wav:
        lines.append(Line(audio=speech.read_wav(path), label=path.name))
    return lines or [Line(text=DEFAULT_LINE)]


async def _call(args, gateway: str, key: str, lines) -> int:
    from voxfleet.devplatform import speech
    from voxfleet.devplatform.caller import Caller
    from voxfleet.devplatform.conversation import collect_late_transcripts, converse
    from voxfleet.devplatform.sessions_client import GatewayClient, GatewayRefused, GatewayUnreachable

    quiet = args.json
    try:
        with GatewayClient(gateway, key) as client:
            grant = await asyncio.to_thread(client.start_session, args.agent)
    except (GatewayRefused, GatewayUnreachable, ValueError) as error:
        print(f"voxfleet call: {error}", file=sys.stderr)
        return 1
    _progress(f"session {grant.session_id or '?'} in region {grant.region or '?'}; joining room {grant.room}", quiet)

    def on_greeting(conversation) -> None:
        if quiet:
            return
        if conversation.greeting_heard:
            _say(f"agent: {conversation.greeting_text or '(spoke; no transcript)'}")
        else:
            _progress("no greeting heard; speaking first", quiet)

    def on_turn(turn) -> None:
        if quiet:
            return
        _say(f"you:   {turn.said}" + (f"    [the agent heard: {turn.caller_text}]" if turn.caller_text else ""))
        if turn.ttfa_s is None:
            _say(f"agent: (no answer within {args.answer_timeout:.0f} s)")
        else:
            _say(f"agent: {turn.agent_text or '(spoke; no transcript)'}    [TTFA {turn.ttfa_s * 1000:.0f} ms]")

    caller = Caller(grant.url, grant.token, voice=args.voice, rate=args.rate)
    try:
        await caller.join()
        conversation = await converse(caller, lines, answer_timeout=args.answer_timeout, on_turn=on_turn,
                                      on_greeting=on_greeting)
        await collect_late_transcripts(caller, conversation)
    except TimeoutError as error:
        print(f"voxfleet call: {error}", file=sys.stderr)
        return 1
    finally:
        await caller.leave()
    audio_origin = None
    if args.save_audio is not None:
        speech.write_wav(args.save_audio, caller.agent_audio())
        audio_origin = caller.heard.frames[0][0] if caller.heard.frames else None
        _progress(f"saved the agent's audio to {args.save_audio}", quiet)
    summary = conversation.summary(audio_origin)
    summary.update(agent=args.agent, region=grant.region, room=grant.room, sessionId=grant.session_id)
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        ttfas = ", ".join(f"{t:.0f} ms" for t in conversation.ttfas_ms()) or "none"
        _say(f"TTFA per turn: {ttfas}" + (f" (p50 {summary['ttfaP50Ms']} ms)" if summary["ttfaP50Ms"] else ""))
    return 0 if summary["answered"] == summary["asked"] else 1


if __name__ == "__main__":
    sys.exit(main())
