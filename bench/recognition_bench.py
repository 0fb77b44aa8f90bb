"""Recognition benchmark (issue 20): does the offline demo agent understand a caller, or say honestly that it did
not? On the caller corpus (bench/data/caller_corpus: 48 labelled lines, tuning and held-out, spoken at run time
in two eSpeak voices no test uses), per voice and set:

- word error rate of the recogniser (the worker's grammar decoder, built from the demo agent's intents);
- intent accuracy (the right intent, or the right no-match), no-match precision/recall, tool-argument accuracy;

for the OLD understanding (today's: any keyword wins, spoken digits only joined digit by digit, no confidence,
no corrections; reproduced here as the baseline) and the NEW one (worker/providers/scripted_llm.Understanding:
spoken numbers, coverage as confidence, corrections), on the same transcripts in the same run. The decoder is
run directly on the audio (no room): these are accuracy figures, not timing. Prints a table and `BENCH_JSON`.

    .venv/bin/python bench/recognition_bench.py
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "data" / "caller_corpus"))

import corpus  # noqa: E402
from voxfleet.api.voiceagent import Intent, VoiceAgentSpec  # noqa: E402
from voxfleet.worker.providers.intent_matcher import fill_arguments  # noqa: E402
from voxfleet.worker.providers.pocketsphinx_stt import SphinxDecoderPool  # noqa: E402
from voxfleet.worker.providers.scripted_llm import Understanding  # noqa: E402
from voxfleet.worker.providers.sphinx_grammar import build_grammar, phrases_from_intents  # noqa: E402

SILENCE = np.zeros(corpus.SAMPLE_RATE // 4, dtype=np.int16).tobytes()


def demo_intents() -> list[Intent]:
    spec = yaml.safe_load((ROOT / "examples" / "offline-demo.yaml").read_text())["spec"]
    return VoiceAgentSpec.model_validate(spec).intents


class OldUnderstanding:
    """The baseline: today's matcher before issue 20 (digit words joined only one by one, the best keyword or
    pattern wins however little of the turn it explains, no corrections), on the old demo pattern."""

    DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
              "seven": "7", "eight": "8", "nine": "9"}
    PATTERN = re.compile(r"order (number )?(?P<order_id>[0-9]{1,10})")

    def __init__(self, intents: list[Intent]):
        self._keywords = [(intent, [set(k.lower().split()) for k in intent.keywords]) for intent in intents]

    def understand(self, heard: str):
        words, run = [], ""
        for word in re.findall(r"[a-z0-9']+", heard.lower()):
            if word in self.DIGITS or word.isdigit():
                run += self.DIGITS.get(word, word)
                continue
            words += [run, word] if run else [word]
            run = ""
        said = " ".join(words + ([run] if run else []))
        best = None
        for intent, keywords in self._keywords:
            score, slots = 0.0, {}
            found = self.PATTERN.search(said) if intent.patterns else None
            if found:
                score, slots = 100.0 + len(found.group(0)), {"order_id": found.group("order_id")}
            for keyword in keywords:
                if keyword <= set(said.split()):
                    score = max(score, float(len(keyword)))
            if score > 0 and (best is None or score > best[0]):
                best = (score, intent, slots)
        return None if best is None else type("Match", (), {"intent": best[1], "slots": best[2]})()


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def score(lines: list[corpus.Line], heard: dict[str, str], make) -> dict:
    right = args_right = args_total = 0
    said_no = truly_no = both_no = 0
    for line in lines:
        understanding = make()
        if line.after:
            understanding.understand(heard["after:" + line.id])
        match = understanding.understand(heard[line.id])
        got = match.intent.name if match else corpus.NO_MATCH
        right += got == line.intent
        said_no += got == corpus.NO_MATCH
        truly_no += line.intent == corpus.NO_MATCH
        both_no += got == line.intent == corpus.NO_MATCH
        if line.args:
            args_total += 1
            call = match.intent.tool_call if match and match.intent.tool_call else None
            args_right += call is not None and fill_arguments(call.arguments, match.slots) == line.args
    return {"intent_accuracy": right / len(lines), "no_match_precision": both_no / said_no if said_no else 1.0,
            "no_match_recall": both_no / truly_no if truly_no else 1.0,
            "tool_argument_accuracy": args_right / args_total if args_total else 1.0}


def run(sets: tuple[str, ...] = corpus.SETS) -> list[dict]:
    """Per voice and set: the recogniser's WER and both understandings' figures."""
    intents = demo_intents()
    pool = SphinxDecoderPool(build_grammar(phrases_from_intents(intents)), 1)
    decoder = pool.acquire()
    lines = [line for line in corpus.lines() if line.set in sets]
    results = []
    for voice in corpus.voices():
        heard: dict[str, str] = {}
        cpu = time.process_time()
        audio_s = 0.0
        for key, text in [(line.id, line.say) for line in lines] + [("after:" + l.id, l.after) for l in lines if l.after]:
            pcm = corpus.speak(text, voice)
            audio_s += len(pcm) / corpus.SAMPLE_RATE
            decoder.start_utt()
            decoder.process_raw(SILENCE + pcm.tobytes() + SILENCE, False, True)
            decoder.end_utt()
            hyp = decoder.hyp()
            heard[key] = hyp.hypstr if hyp is not None else ""
        cpu = time.process_time() - cpu
        for name in sets:
            chosen = [line for line in lines if line.set == name]
            errors = sum(word_errors(words(l.say), words(heard[l.id])) for l in chosen)
            wer = errors / sum(len(words(l.say)) for l in chosen)
            old = score(chosen, heard, lambda: OldUnderstanding(intents))
            new = score(chosen, heard, lambda: Understanding(intents))
            results.append({"voice": voice.name, "set": name, "lines": len(chosen), "wer": wer, "old": old,
                            "new": new, "decode_cpu_per_audio_s": cpu / audio_s})
    return results


def main() -> None:
    started = time.monotonic()
    results = run()
    print(f"{'voice':10} {'set':9} {'WER':>5} | {'intent old/new':>15} | {'no-match P old/new':>18} | "
          f"{'no-match R old/new':>18} | {'tool args old/new':>17}")
    for r in results:
        o, n = r["old"], r["new"]
        print(f"{r['voice']:10} {r['set']:9} {r['wer']:5.2f} | {o['intent_accuracy']:6.2f} / {n['intent_accuracy']:5.2f} |"
              f" {o['no_match_precision']:8.2f} / {n['no_match_precision']:5.2f} |"
              f" {o['no_match_recall']:8.2f} / {n['no_match_recall']:5.2f} |"
              f" {o['tool_argument_accuracy']:7.2f} / {n['tool_argument_accuracy']:5.2f}")
    held = [r for r in results if r["set"] == "held-out"]
    summary = {name: sum(r[name]["intent_accuracy"] for r in held) / len(held) for name in ("old", "new")}
    print(f"held-out intent accuracy, mean over voices: old {summary['old']:.2f}, new {summary['new']:.2f}"
          f" (ratio {summary['new'] / max(summary['old'], 1e-9):.2f}); run {time.monotonic() - started:.0f} s")
    print("BENCH_JSON " + json.dumps({"bench": "recognition", "results": results, "held_out_intent_accuracy": summary}))


if __name__ == "__main__":
    main()
