"""The API keys of a suite's LLMs (a simulated caller's brain, a rubric's judge): read from the environment variable
or the file the scenario names, checked for every scenario before the first call is placed. A key is never
logged or echoed; errors name the setting and the file, never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from voxfleet.evaluation.scenario_models import OpenAIBrain, Scenario

MAX_KEY_BYTES = 4096


class LLMKeyError(ValueError):
    """An LLM of the suite cannot be used (no key); the message names the setting, never a secret."""


def read_api_key(brain: OpenAIBrain, suite_dir: Path, where: str = "caller.brain") -> str:
    """`where`: the setting's path in the scenario, for the message (caller.brain, rubric.judge)."""
    if brain.api_key_env is not None:
        key = os.environ.get(brain.api_key_env, "").strip()
        if not key:
            raise LLMKeyError(f"{where}.apiKeyEnv: the environment variable {brain.api_key_env} is not set")
        return key
    path = (suite_dir / (brain.api_key_file or "")).resolve()
    if not path.is_relative_to(suite_dir.resolve()):  # a link out of the folder: the model checked the text only
        raise LLMKeyError(f"{where}.apiKeyFile: {brain.api_key_file} leads out of the scenario file's folder")
    try:
        key = path.read_bytes()[:MAX_KEY_BYTES].decode("utf-8", "replace").strip()
    except OSError as error:
        raise LLMKeyError(f"{where}.apiKeyFile: cannot read {path} ({error.strerror or 'error'})") from None
    if not key:
        raise LLMKeyError(f"{where}.apiKeyFile: {path} is empty")
    return key


def llm_brains(scenario: Scenario) -> list[tuple[str, OpenAIBrain]]:
    """The scenario's LLMs that need a key, with where each is set."""
    brains = []
    if scenario.caller is not None and isinstance(scenario.caller.brain, OpenAIBrain):
        brains.append(("caller.brain", scenario.caller.brain))
    if scenario.rubric is not None:
        brains.append(("rubric.judge", scenario.rubric.judge))
    return brains


def key_problems(scenarios: list[Scenario], suite_dir: Path) -> list[str]:
    """Every LLM whose key cannot be read, found before the first call is placed (not in the middle of each
    call); `voxfleet eval --check` skips this, so a suite can be checked where the keys are not."""
    problems = []
    for scenario in scenarios:
        for where, brain in llm_brains(scenario):
            try:
                read_api_key(brain, suite_dir, where)
            except LLMKeyError as error:
                problems.append(f"{scenario.name}: {error}")
    return problems
