"""ACCURACY FLOOR, not timing (issue 20): what the offline demo agent ships on the caller corpus's HELD-OUT lines,
both voices, with the audio laid out as the worker's STT receives it in a room (bench/recognition_bench.py:
pre-roll, 20 ms chunks, the VAD's tail; no room itself). Pins the shipped pipeline (the new recogniser: cepstral
mean from the utterance, phone-loop rejection; the new understanding) at a floor, and above the pipeline before
issue 20 (the old recogniser's streaming, the old understanding) on the same audio in the same run.

Measured 2026-12-04 on the worker's path: shipped 0.67-0.69, before 0.54-0.58. The figure first pinned here (0.73) was
decoded a way the worker never decoded (whole utterances at once, batch cepstral mean), see worker/README.md,
Understanding. With the recogniser rejecting chatter itself, the new understanding alone no longer beats the old
one on these held-out transcripts (0.67 vs 0.73 in the bench run; on the tuning lines it still does), so that
comparison is printed, not asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

pytestmark = [pytest.mark.timeout(400)]

# Runs on the worker's path, 2026-12-04: 0.69, 0.62, 0.67, and with the shipped code 0.67 (bench) and 0.69; before
# issue 20 0.54-0.58. eSpeak's noise source is random, so a run moves by a line or two per voice.
FLOOR = 0.60


def test_held_out_intent_accuracy_floor():
    import recognition_bench as bench

    held = bench.run(sets=("held-out",), recognisers=("old", "new"))
    for row in held:
        print(f"{row['recogniser']} recogniser, {row['voice']} held-out: intent accuracy old understanding"
              f" {row['old']['intent_accuracy']:.2f}, new {row['new']['intent_accuracy']:.2f}; no-match recall new"
              f" {row['new']['no_match_recall']:.2f}; WER {row['wer']:.2f}")

    def mean(recogniser: str, understanding: str) -> float:
        rows = [row for row in held if row["recogniser"] == recogniser]
        return sum(row[understanding]["intent_accuracy"] for row in rows) / len(rows)

    shipped, before = mean("new", "new"), mean("old", "old")
    print(f"held-out intent accuracy mean: shipped {shipped:.2f} (floor {FLOOR}), before issue 20 {before:.2f};"
          f" new recogniser with the old understanding {mean('new', 'old'):.2f}, old recogniser with the new"
          f" understanding {mean('old', 'new'):.2f}")
    assert shipped >= FLOOR
    assert shipped > before
