"""Recognition benchmark (issue 20): does the offline demo agent understand a caller, or say honestly that it did
not? On the caller corpus (bench/data/caller_corpus: 48 labelled lines, tuning and held-out, spoken at run time
in two eSpeak voices no test uses), per voice and set:

- word error rate of the recogniser (the worker's grammar decoder, built from the demo agent's intents);
- intent accuracy (the right intent, or the right no-match), no-match precision/recall, tool-argument accuracy;

for the OLD understanding (any keyword wins, spoken digits only joined digit by digit, no confidence, no
corrections; reproduced here as the baseline) and the NEW one (worker/providers/scripted_llm.Understanding:
spoken numbers, coverage as confidence, corrections), on the same transcripts in the same run.

The audio reaches the decoder as it does in the worker (as_the_worker_hears): the caller's silence and the VAD's start
delay in the pre-roll, then 20 ms chunks streamed, then the VAD's stop tail. Two recognisers, same run:
- `old`: the worker's decoding before the fix (streamed with the decoder's standing cepstral mean, the model's
  prior; the grammar with the stray "d" from a pattern's \\D; no rejection);
- `new`: pocketsphinx_stt.Utterance, the worker's own class (cepstral mean from the utterance's opening, the
  phone-loop rejection).
No room: these are accuracy figures, not timing. Prints tables and `BENCH_JSON`.

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
from voxfleet.worker.providers.pocketsphinx_stt import SphinxDecoderPool, SphinxDecoders, Utterance  # noqa: E402
from voxfleet.worker.providers.scripted_llm import Understanding  # noqa: E402
from voxfleet.worker.providers.sphinx_grammar import (  # noqa: E402
    CORRECTION_PHRASES,
    DIGIT_WORDS,
    build_grammar,
    phrases_from_intents,
)

# How the worker's STT is handed a caller's line in a room (measured on the audio the worker received in
# tests/worker/test_understanding_calls.py): ~230 ms of the caller's silence and the VAD's ~200 ms start delay
# in the pre-roll, the rest in 20 ms frames, then the VAD's 200 ms stop tail. The caller sends digital silence.
LEAD_S, VAD_START_S, TAIL_S, CHUNK_S = 0.23, 0.2, 0.2, 0.02
RECOGNISERS = ("old", "new")


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


def old_grammar_phrases(intents: list[Intent]) -> list[str]:
    """The grammar's phrases before the fix: regex escapes were read as words ("\\D" -> "d")."""
    phrases: list[str] = []
    for intent in intents:
        phrases.extend(intent.keywords)
        for pattern in intent.patterns:
            phrases.extend(re.findall(r"[a-z][a-z']*", re.sub(r"\(\?P<[^>]*>", "(", pattern).lower()))
            if re.search(r"\\d|\[0-9|\[\^?[0-9]", pattern):
                phrases.extend(DIGIT_WORDS)
        if intent.correctable:
            phrases.extend(CORRECTION_PHRASES)
    return phrases


def as_the_worker_hears(pcm: np.ndarray) -> tuple[bytes, list[bytes]]:
    """(pre-roll, chunks): a line laid out as the worker's STT receives it."""
    rate = corpus.SAMPLE_RATE
    audio = np.concatenate([np.zeros(int(LEAD_S * rate), np.int16), pcm, np.zeros(int(TAIL_S * rate), np.int16)])
    data = audio.tobytes()
    start, step = int((LEAD_S + VAD_START_S) * rate) * 2, int(CHUNK_S * rate) * 2
    return data[:start], [data[i:i + step] for i in range(start, len(data), step)]


def decode_old(decoders: SphinxDecoders, pcm: np.ndarray) -> str:
    """The worker's decoding before the fix: pre-roll and chunks streamed with whatever mean the decoder held."""
    pre_roll, chunks = as_the_worker_hears(pcm)
    decoder = decoders.words
    decoder.start_utt()
    for chunk in [pre_roll, *chunks]:
        decoder.process_raw(chunk, False, False)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


def decode_new(decoders: SphinxDecoders, pcm: np.ndarray) -> str:
    pre_roll, chunks = as_the_worker_hears(pcm)
    utterance = Utterance(decoders, pre_roll)
    for chunk in chunks:
        utterance.feed(chunk)
    return utterance.finish()


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


def run(sets: tuple[str, ...] = corpus.SETS, recognisers: tuple[str, ...] = ("new",)) -> list[dict]:
    """Per recogniser, voice and set: the recogniser's WER and both understandings' figures."""
    intents = demo_intents()
    lines = [line for line in corpus.lines() if line.set in sets]
    said = [(line.id, line.say) for line in lines] + [("after:" + l.id, l.after) for l in lines if l.after]
    results = []
    for recogniser in recognisers:
        if recogniser == "old":
            decoders = SphinxDecoders(SphinxDecoderPool(build_grammar(old_grammar_phrases(intents)), 1)
                                      .acquire().words)
            decode = decode_old
        else:
            decoders = SphinxDecoderPool(build_grammar(phrases_from_intents(intents)), 1).acquire()
            decode = decode_new
        for voice in corpus.voices():
            heard: dict[str, str] = {}
            cpu = time.process_time()
            audio_s = 0.0
            for key, text in said:
                pcm = corpus.speak(text, voice)
                audio_s += len(pcm) / corpus.SAMPLE_RATE
                heard[key] = decode(decoders, pcm)
            cpu = time.process_time() - cpu
            for name in sets:
                chosen = [line for line in lines if line.set == name]
                errors = sum(word_errors(words(l.say), words(heard[l.id])) for l in chosen)
                wer = errors / sum(len(words(l.say)) for l in chosen)
                old = score(chosen, heard, lambda: OldUnderstanding(intents))
                new = score(chosen, heard, lambda: Understanding(intents))
                results.append({"recogniser": recogniser, "voice": voice.name, "set": name, "lines": len(chosen),
                                "wer": wer, "old": old, "new": new, "decode_cpu_per_audio_s": cpu / audio_s})
    return results


def main() -> None:
    started = time.monotonic()
    results = run(recognisers=RECOGNISERS)
    print(f"{'recogniser':10} {'voice':10} {'set':9} {'WER':>5} | {'intent old/new':>15} |"
          f" {'no-match P old/new':>18} | {'no-match R old/new':>18} | {'tool args old/new':>17} | cpu/audio s")
    for r in results:
        o, n = r["old"], r["new"]
        print(f"{r['recogniser']:10} {r['voice']:10} {r['set']:9} {r['wer']:5.2f} |"
              f" {o['intent_accuracy']:6.2f} / {n['intent_accuracy']:5.2f} |"
              f" {o['no_match_precision']:8.2f} / {n['no_match_precision']:5.2f} |"
              f" {o['no_match_recall']:8.2f} / {n['no_match_recall']:5.2f} |"
              f" {o['tool_argument_accuracy']:7.2f} / {n['tool_argument_accuracy']:5.2f} |"
              f" {r['decode_cpu_per_audio_s']:.3f}")
    summary = {}
    for recogniser in RECOGNISERS:
        held = [r for r in results if r["set"] == "held-out" and r["recogniser"] == recogniser]
        summary[recogniser] = {name: sum(r[name]["intent_accuracy"] for r in held) / len(held)
                               for name in ("old", "new")}
        print(f"{recogniser} recogniser, held-out intent accuracy, mean over voices: old understanding"
              f" {summary[recogniser]['old']:.2f}, new {summary[recogniser]['new']:.2f}")
    print(f"run {time.monotonic() - started:.0f} s")
    print("BENCH_JSON " + json.dumps({"bench": "recognition", "results": results,
                                      "held_out_intent_accuracy": summary}))


if __name__ == "__main__":
    main()
