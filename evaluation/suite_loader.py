"""Reading a scenario file: bounded YAML, validated by the models, WAV paths resolved and checked up front.

Every problem is reported before the first call is placed, each as `file: where: what` (the field path in the
file's own camelCase names), so a CI log says exactly which line of which scenario to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from voxfleet.evaluation.scenario_models import ScenarioSuite, Utterance

MAX_SUITE_BYTES = 1 << 20


class SuiteError(ValueError):
    """A scenario file that cannot be run; the message lists every problem found."""


@dataclass
class LoadedSuite:
    path: Path
    suite: ScenarioSuite
    _audio: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def audio_for(self, utterance: Utterance) -> np.ndarray:
        """16 kHz mono int16 samples of a line (eSpeak NG, with the suite's voice) or of its WAV file."""
        key = f"say:{utterance.say}" if utterance.say is not None else f"wav:{utterance.wav}"
        if key not in self._audio:
            from voxfleet.devplatform import speech

            defaults = self.suite.defaults
            self._audio[key] = (speech.synthesize(utterance.say, voice=defaults.voice, rate=defaults.rate)
                                if utterance.say is not None else speech.read_wav(self.resolve(utterance.wav or "")))
        return self._audio[key]

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()


def load_suite(path: Path) -> LoadedSuite:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SuiteError(f"{path}: cannot read the scenario file ({error.strerror or error})") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: the scenario file is larger than {MAX_SUITE_BYTES // 1024} KiB")
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise SuiteError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise SuiteError(f"{path}: a scenario file is a mapping with `agent:` and `scenarios:` at the top")
    try:
        suite = ScenarioSuite.model_validate(document)
    except ValidationError as error:
        raise SuiteError(f"{path}: {error.error_count()} problem(s):\n" + "\n".join(
            f"  {field_path(item['loc'])}: {item['msg']}" for item in error.errors())) from None
    loaded = LoadedSuite(path=path.resolve(), suite=suite)
    problems = _audio_problems(loaded)
    if problems:
        raise SuiteError(f"{path}: {len(problems)} problem(s) with WAV files:\n" + "\n".join(
            f"  {p}" for p in problems))
    return loaded


def field_path(location: tuple) -> str:
    """`('scenarios', 0, 'turns', 1, 'expect')` -> `scenarios[0].turns[1].expect` (the file's own names)."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _audio_problems(loaded: LoadedSuite) -> list[str]:
    from voxfleet.devplatform import speech

    problems: list[str] = []
    for relative in dict.fromkeys(loaded.suite.audio_files()):
        path = loaded.resolve(relative)
        if not path.is_file():
            problems.append(f"{relative}: no such file (looked for {path})")
            continue
        try:
            loaded._audio[f"wav:{relative}"] = speech.read_wav(path)
        except ValueError as error:
            problems.append(f"{relative}: {error}")
    return problems
