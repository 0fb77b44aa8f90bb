"""Scenario files: a suite of scripted calls to one agent, with what each turn must show.

    agent: concierge
    defaults: {ttfaMaxMs: 2500}
    scenarios:
      - name: opening-hours
        turns:
          - say: what are your opening hours         # or wav: recordings/hours.wav (relative to this file)
            expect:
              mentions: [nine, six]
              ttfaMaxMs: 1500
          - say: where is my order number one two three four
            expect:
              toolCalls: [{name: lookup_order, arguments: {order_id: "1234"}}]
          - say: tell me your opening hours
            bargeIn: {atMs: 500, say: goodbye}        # spoken 500 ms into the agent's reply
            expect: {stopsWhenInterrupted: true}

A scenario may also have (instead of, or after, its turns) a `caller:` that reacts to what the agent says, a
persona script or an LLM, until its goal's rules hold (evaluation/README.md, Simulated callers).

These models are the documented contract: scenario-suite.schema.json is generated from them (editors use it
for completion), and `voxfleet eval` validates every file with them before it places a single call.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from voxfleet.api.model_base import DNS_LABEL, ApiModel
from voxfleet.api.voiceagent import MAX_TOOL_ARGUMENT_BYTES, TOOL_NAME

SCENARIO_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
MAX_LINE_CHARS = 500
MAX_WORD_CHARS = 100


# A word or phrase to look for in what the agent said (something other than blanks).
Phrase = Annotated[str, StringConstraints(min_length=1, max_length=MAX_WORD_CHARS, pattern=r"\S")]


def _words_field(description: str) -> Any:
    return Field(default_factory=list, max_length=20, description=description)


class Utterance(ApiModel):
    """Something the caller says: a line of text (spoken locally by eSpeak NG) or a WAV recording."""

    say: str | None = Field(default=None, min_length=1, max_length=MAX_LINE_CHARS,
                            description="Text the caller speaks (synthesised locally with eSpeak NG).")
    wav: str | None = Field(default=None, min_length=1, max_length=1024,
                            description="A PCM WAV file the caller plays, relative to the scenario file.")

    @model_validator(mode="after")
    def _one_source(self) -> "Utterance":
        if (self.say is None) == (self.wav is None):
            raise ValueError("give exactly one of say and wav")
        return self

    def shown(self) -> str:
        return self.say if self.say is not None else f"[{self.wav}]"


class BargeIn(Utterance):
    """The caller talks over the agent: this utterance starts `atMs` after the agent's reply began."""

    at_ms: int = Field(ge=0, le=30000, description="How far into the agent's reply (as the caller hears it) the"
                                                   " caller starts speaking.")
    stop_within_ms: int = Field(default=300, ge=100, le=10000,
                                description="The agent counts as having stopped when its audio, as the caller"
                                            " hears it, goes quiet within this long after the caller's voice"
                                            " began (300: the platform's barge-in goal, issue 20).")


class ToolCallExpectation(ApiModel):
    """A tool the agent must call during the turn; `arguments` must match (extra arguments are fine)."""

    name: str = Field(max_length=64, pattern=TOOL_NAME, description="The tool's name in the agent's spec.")
    arguments: dict[str, Any] = Field(default_factory=dict,
                                      description="Arguments the call must carry, compared after JSON decoding"
                                                  " (numbers and strings are not interchangeable).")

    @field_validator("arguments")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        import json

        if len(json.dumps(value)) > MAX_TOOL_ARGUMENT_BYTES:
            raise ValueError(f"arguments are larger than {MAX_TOOL_ARGUMENT_BYTES} bytes")
        return value


class TurnExpectations(ApiModel):
    """What the turn must show. Every turn also expects an answer within the suite's answerTimeoutMs."""

    mentions: list[Phrase] = _words_field("Words or phrases the agent's speech in this turn must all contain"
                                       " (case-insensitive, whole words).")
    not_mentions: list[Phrase] = _words_field("Words or phrases the agent must not say in this turn.")
    tool_calls: list[ToolCallExpectation] = Field(default_factory=list, max_length=10,
                                                  description="Tools the agent must call in this turn (checked"
                                                              " against the tool calls the session recorded).")
    no_tool_calls: bool = Field(default=False, description="The agent must call no tool in this turn.")
    stops_when_interrupted: bool | None = Field(
        default=None, description="With bargeIn: true if the agent must stop talking when interrupted, false if it"
                                  " must keep talking.")
    ttfa_max_ms: int | None = Field(default=None, ge=1, le=60000,
                                    description="Upper bound of the time to first audio (end of the caller's"
                                                " speech to the agent's first audio, as the caller hears it).")

    @model_validator(mode="after")
    def _consistent(self) -> "TurnExpectations":
        if self.no_tool_calls and self.tool_calls:
            raise ValueError("noToolCalls contradicts toolCalls")
        clash = {w.lower() for w in self.mentions} & {w.lower() for w in self.not_mentions}
        if clash:
            raise ValueError(f"{sorted(clash)} appear in both mentions and notMentions")
        return self


class CallerTurn(Utterance):
    """One caller turn: say (or play) a line into silence, then wait for the agent's reply."""

    barge_in: BargeIn | None = Field(default=None, description="Talk over the agent's reply to this line.")
    expect: TurnExpectations = Field(default_factory=TurnExpectations, description="What this turn must show.")

    @model_validator(mode="after")
    def _interruption_needs_barge_in(self) -> "CallerTurn":
        if self.expect.stops_when_interrupted is not None and self.barge_in is None:
            raise ValueError("expect.stopsWhenInterrupted needs a bargeIn on the same turn")
        return self


class GreetingExpectations(ApiModel):
    mentions: list[Phrase] = _words_field("Words or phrases the greeting must contain.")


MAX_CALLER_TURNS = 20
MAX_SCRIPT_RULES = 30
API_KEY_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,119}_API_KEY$"


class Interruption(ApiModel):
    """The simulated caller talks over the agent's answer: `say` starts `atMs` into it, and the agent must stop
    within `stopWithinMs` (judged like a fixed turn's bargeIn with stopsWhenInterrupted: true)."""

    say: str = Field(min_length=1, max_length=MAX_LINE_CHARS, description="What the caller cuts in with.")
    at_ms: int = Field(ge=0, le=30000, description="How far into the agent's answer (as the caller hears it).")
    stop_within_ms: int = Field(default=300, ge=100, le=10000, description="The agent must go quiet this soon"
                                                                           " after the caller's voice began.")

    def as_barge_in(self) -> BargeIn:
        return BargeIn(say=self.say, at_ms=self.at_ms, stop_within_ms=self.stop_within_ms)


class ScriptRule(ApiModel):
    """A branch of a persona script: when the agent's last words mention one of `whenAgentSays`, say `say`."""

    when_agent_says: list[Phrase] = Field(min_length=1, max_length=10,
                                          description="Words or phrases (case-insensitive, whole words, digits as"
                                                      " spoken or written); any one of them picks this rule. Plain"
                                                      " phrases, not patterns: matching stays linear.")
    say: str = Field(min_length=1, max_length=MAX_LINE_CHARS, description="The caller's answer.")
    hang_up: bool = Field(default=False, description="Hang up once the agent has answered this line.")
    interrupt: Interruption | None = Field(default=None, description="Cut in on the agent's answer to this line.")


class ScriptedBrain(ApiModel):
    """A persona script that needs no keys: an opening line, rules that branch on what the agent just said (the
    first matching rule wins), a fallback when none matches, and a line to end the call with."""

    kind: Literal["scripted"] = Field(description="The offline caller.")
    opening: str = Field(min_length=1, max_length=MAX_LINE_CHARS, description="The caller's first line.")
    opening_interrupt: Interruption | None = Field(default=None, description="Cut in on the agent's answer to the"
                                                                             " opening line.")
    rules: list[ScriptRule] = Field(default_factory=list, max_length=MAX_SCRIPT_RULES,
                                    description="Answers to what the agent says, tried in order.")
    fallback: str | None = Field(default=None, min_length=1, max_length=MAX_LINE_CHARS,
                                 description="Said when no rule matches (none: the caller hangs up instead).")
    hang_up: str | None = Field(default=None, min_length=1, max_length=MAX_LINE_CHARS, description=(
        "Said once the goal is reached, before hanging up (none: the caller just leaves)."))


class OpenAIBrain(ApiModel):
    """An LLM plays the caller through an OpenAI-compatible Chat Completions endpoint. The key is read from an
    environment variable or a file when the run starts; it never appears in the scenario file or the report."""

    kind: Literal["openai"] = Field(description="An LLM as the caller.")
    base_url: str = Field(max_length=500, pattern=r"^https?://[^\s]+$",
                          description="The endpoint's base URL, e.g. https://api.openai.com/v1.")
    model: str = Field(min_length=1, max_length=200, pattern=r"^\S+$", description="The model to ask.")
    # A scenario file may come from someone else (a pull request run by CI): what it can name is bounded, so it
    # cannot send the runner's other secrets (a cloud credential, a token, ~/.ssh) to a baseUrl it chooses.
    api_key_env: str | None = Field(default=None, pattern=API_KEY_ENV_NAME,
                                    description="Environment variable holding the API key; its name must end in"
                                                " _API_KEY (e.g. OPENAI_API_KEY), so no other secret can be named.")
    api_key_file: str | None = Field(default=None, min_length=1, max_length=1024,
                                     description="File holding the API key, inside the scenario file's folder"
                                                 " (a relative path without '..').")
    temperature: float = Field(default=0.3, ge=0, le=2, description="Sampling temperature of the caller's lines.")

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_the_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in ("apiKey", "api_key", "key", "token")):
            # Said without echoing the value: validation messages end up in CI logs.
            raise ValueError("an API key does not belong in a scenario file: name it with apiKeyEnv or apiKeyFile")
        return data

    @field_validator("api_key_file")
    @classmethod
    def _inside_the_suite(cls, value: str | None) -> str | None:
        if value is not None and (PurePosixPath(value).is_absolute() or ".." in PurePosixPath(value).parts
                                  or "\\" in value):
            raise ValueError("must be a relative path inside the scenario file's folder, without '..'")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> "OpenAIBrain":
        if (self.api_key_env is None) == (self.api_key_file is None):
            raise ValueError("give exactly one of apiKeyEnv and apiKeyFile")
        return self


class CallerGoal(ApiModel):
    """What success is. `description` tells an LLM caller what it wants; the rules decide whether it got it,
    over everything the agent said and called while the simulated caller talked."""

    description: str = Field(min_length=1, max_length=1000, description="The goal in words.")
    tool_calls: list[ToolCallExpectation] = Field(default_factory=list, max_length=10,
                                                  description="Tools the agent must have called, with arguments.")
    mentions: list[Phrase] = _words_field("Words or phrases the agent must have said (whole words).")

    @model_validator(mode="after")
    def _judgeable(self) -> "CallerGoal":
        if not self.tool_calls and not self.mentions:
            raise ValueError("a goal needs at least one rule to judge it by: toolCalls or mentions")
        return self


class SimulatedCaller(ApiModel):
    """A caller that reacts to the agent, one turn at a time, until the goal is reached, the agent leaves, the
    caller hangs up, or `maxTurns` lines have been said."""

    persona: str = Field(min_length=1, max_length=2000, description="Who the caller is and how they talk.")
    goal: CallerGoal
    max_turns: int = Field(default=6, ge=1, le=MAX_CALLER_TURNS,
                           description="The most lines the caller says; the goal not reached by then fails.")
    patience_ms: int | None = Field(default=None, ge=1000, le=120000, description=(
        "Silence after a line that the caller sits through before hanging up, as a person would"
        " (default: the suite's answerTimeoutMs)."))
    brain: Annotated[ScriptedBrain | OpenAIBrain, Field(discriminator="kind")] = Field(
        description="What decides the caller's next line.")


class Rubric(ApiModel):
    """An LLM judges the whole call against criteria in words, after the rules: its verdict and its reason join
    the report as one more expectation (`rubric`), counted by JUnit and baselines like the others."""

    criteria: str = Field(min_length=1, max_length=2000, description=(
        "What a good call does, in words, e.g. 'The agent asks for the order number before looking anything up"
        " and never promises a delivery date it was not given.'"))
    judge: OpenAIBrain = Field(description="The LLM that judges (temperature 0 gives steadier verdicts); it gets"
                                           " the criteria and the call's transcript, never audio.")


class Scenario(ApiModel):
    """One call: fixed turns, a simulated caller, or fixed turns then a simulated caller."""

    name: str = Field(min_length=1, max_length=100, pattern=SCENARIO_NAME,
                      description="Unique in the suite; names the JUnit test cases and the report entries.")
    description: str = Field(default="", max_length=1000, description="What the scenario checks.")
    wait_for_greeting: bool = Field(default=True, description="Let the agent greet before the first turn.")
    greeting: GreetingExpectations | None = Field(default=None, description="What the greeting must contain.")
    turns: list[CallerTurn] = Field(default_factory=list, max_length=50, description="The caller's turns, in order.")
    caller: SimulatedCaller | None = Field(default=None, description="A caller that reacts to the agent, after"
                                                                     " the fixed turns (if any).")
    rubric: Rubric | None = Field(default=None, description="An LLM's verdict on the whole call (not in load runs).")

    @model_validator(mode="after")
    def _something_to_say(self) -> "Scenario":
        if not self.turns and self.caller is None:
            raise ValueError("a scenario needs turns, a caller, or both")
        return self


class RunDefaults(ApiModel):
    """Settings for every scenario of the suite."""

    ttfa_max_ms: int | None = Field(default=None, ge=1, le=60000,
                                    description="TTFA bound for every turn without its own ttfaMaxMs.")
    answer_timeout_ms: int = Field(default=20000, ge=1000, le=120000,
                                   description="A turn fails when no agent audio is heard within this long.")
    reply_quiet_ms: int = Field(default=1000, ge=300, le=10000,
                                description="The agent's reply is over once it has been quiet this long (the next"
                                            " turn is spoken only then).")
    greeting_timeout_ms: int = Field(default=8000, ge=500, le=60000,
                                     description="How long to wait for a greeting before speaking anyway.")
    voice: str = Field(default="en-us", max_length=64, pattern=r"^[A-Za-z0-9_+-]+$",
                       description="eSpeak NG voice for `say` lines.")
    rate: int = Field(default=175, ge=80, le=450, description="Speaking rate of `say` lines, words per minute.")


class Tolerances(ApiModel):
    """How much worse than the baseline a run may be before `voxfleet eval --baseline` fails it."""

    ttfa_p95_increase_ms: float = Field(default=150.0, ge=0, le=60000,
                                        description="Allowed rise of the TTFA p95 over the baseline's.")
    ttfa_p95_increase_percent: float = Field(default=20.0, ge=0, le=1000,
                                             description="Allowed rise of the TTFA p95, in percent of the"
                                                         " baseline's (the larger of the two allowances counts).")
    turn_success_rate_drop: float = Field(default=0.0, ge=0, le=1,
                                          description="Allowed fall of the share of turns that passed (0.05 = five"
                                                      " percentage points).")
    failed_expectations_increase: int = Field(default=0, ge=0, le=10000,
                                              description="Allowed rise in the number of failed expectations.")


class ScenarioSuite(ApiModel):
    """A suite of scenarios for one agent: what `voxfleet eval` runs."""

    agent: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL, description="The VoiceAgent to call.")
    description: str = Field(default="", max_length=2000, description="What the suite covers.")
    region: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL,
                               description="Preferred region for the calls (default: the gateway's choice).")
    defaults: RunDefaults = Field(default_factory=RunDefaults, description="Settings for every scenario.")
    tolerances: Tolerances = Field(default_factory=Tolerances,
                                   description="Regression tolerances against a baseline report.")
    scenarios: list[Scenario] = Field(min_length=1, max_length=500, description="The scripted calls.")

    @model_validator(mode="after")
    def _unique_names(self) -> "ScenarioSuite":
        seen: set[str] = set()
        for scenario in self.scenarios:
            if scenario.name in seen:
                raise ValueError(f"scenario names must be unique: {scenario.name!r} appears twice")
            seen.add(scenario.name)
        return self

    def audio_files(self) -> list[str]:
        """Every WAV path the suite names (turns and barge-ins), relative to the suite file."""
        paths: list[str] = []
        for scenario in self.scenarios:
            for turn in scenario.turns:
                paths += [u.wav for u in (turn, turn.barge_in) if u is not None and u.wav is not None]
        return paths
