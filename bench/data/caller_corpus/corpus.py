"""The caller corpus: labelled lines (lines.yaml) spoken at run time by eSpeak NG in the corpus voices
(voices.yaml). No audio is stored: the same text, voice and rate give the same samples on every run.

    .venv/bin/python bench/data/caller_corpus/corpus.py --out /tmp/corpus   # write the WAVs to listen to them
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
SETS = ("tuning", "held-out")
NO_MATCH = "no-match"
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Line:
    id: str
    set: str
    say: str
    intent: str
    args: dict[str, str] = field(default_factory=dict)
    after: str | None = None  # the caller's previous line (corrections)


@dataclass(frozen=True)
class Voice:
    name: str
    voice: str
    rate: int


def lines() -> list[Line]:
    loaded = [Line(**{k: v for k, v in entry.items()}) for entry in
              yaml.safe_load((HERE / "lines.yaml").read_text())["lines"]]
    assert all(line.set in SETS for line in loaded), "every line is tuning or held-out"
    return loaded


def voices() -> list[Voice]:
    return [Voice(**entry) for entry in yaml.safe_load((HERE / "voices.yaml").read_text())["voices"]]


def speak(text: str, voice: Voice) -> np.ndarray:
    """16 kHz mono int16, as a caller's microphone would hand it to the worker."""
    from voxfleet.devplatform.speech import synthesize

    return synthesize(text, voice=voice.voice, rate=voice.rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    from voxfleet.devplatform.speech import write_wav

    for voice in voices():
        for line in lines():
            write_wav(out / voice.name / f"{line.id}.wav", speak(line.say, voice))
    print(f"wrote {len(lines()) * len(voices())} WAVs under {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
