"""The JSON report of a load run (`voxfleet eval --load N --duration D --report`): every call the callers placed,
the figures of the loaded run beside the same scenarios placed one at a time in the same run (a shared machine or
cluster gives no absolute figure worth comparing across runs; the ratio is), and the run over time.

Figures are computed here from the calls alone (pure), so a reader can recompute every one from `calls`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from voxfleet.api.model_base import ApiModel
from voxfleet.evaluation.report_models import percentile

LOAD_REPORT_FORMAT = "voxfleet-eval-load-report/v1"
BUCKETS = 12  # the run over time: about a dozen slices, each at least MIN_BUCKET_S long
MIN_BUCKET_S = 5.0

Outcome = Literal["passed", "failed", "refused", "error"]


class LoadCall(ApiModel):
    caller: int = Field(description="Which caller placed it (0-based; the single-caller run is caller 0).")
    scenario: str
    started_s: float = Field(description="Seconds since its run began: when the caller asked for the session.")
    admission_wait_s: float | None = Field(default=None, description="Asking for the session -> granted (waiting"
                                                                      " out 429/503 for a free slot).")
    duration_s: float = 0.0
    outcome: Outcome = Field(description="passed; failed (placed, an expectation failed); refused (never granted"
                                         " a session within the caller's patience); error (the call broke off).")
    error: str | None = None
    ttfa_ms: list[float] = Field(default_factory=list, description="Each answered turn's TTFA as the caller heard"
                                                                   " it (end of its speech -> the agent's audio).")
    unanswered_turns: int = 0
    refusals: int = Field(default=0, description="429/503 answers this call's session start met.")


class LoadFigures(ApiModel):
    calls: int = 0
    passed: int = 0
    failed: int = 0
    refused: int = Field(default=0, description="Calls never granted a session.")
    errors: int = 0
    refusals: int = Field(default=0, description="429/503 answers to session starts (no free slot, a quota); the"
                                                 " caller waited as Retry-After said and asked again.")
    answers: int = Field(default=0, description="Answered turns (the TTFA sample).")
    unanswered_turns: int = 0
    ttfa_p50_ms: float | None = None
    ttfa_p95_ms: float | None = None
    ttfa_p99_ms: float | None = None
    ttfa_max_ms: float | None = None
    admission_wait_p95_s: float | None = None
    calls_per_minute: float = 0.0


class LoadBucket(ApiModel):
    from_s: float
    to_s: float
    calls_started: int = 0
    passed: int = 0
    failed: int = Field(default=0, description="Failed, refused or broken calls started in this slice.")
    refusals: int = 0
    ttfa_p50_ms: float | None = None
    ttfa_p95_ms: float | None = None


class LoadReport(ApiModel):
    format: Literal["voxfleet-eval-load-report/v1"] = LOAD_REPORT_FORMAT
    suite: str
    agent: str
    gateway: str
    started_at: datetime
    callers: int
    duration_s: float = Field(description="How long the callers kept placing calls (calls under way then finish).")
    ran_s: float = Field(description="The loaded run's length, its last calls included.")
    single: LoadFigures = Field(description="Each scenario once, one call at a time, just before the load.")
    loaded: LoadFigures
    ttfa_p95_vs_single: float | None = Field(default=None, description="Loaded TTFA p95 / single-caller p95.")
    over_time: list[LoadBucket] = Field(default_factory=list)
    single_calls: list[LoadCall] = Field(default_factory=list)
    calls: list[LoadCall] = Field(default_factory=list, description="The loaded run's calls.")

    @property
    def passed(self) -> bool:
        return all(c.outcome == "passed" for c in [*self.single_calls, *self.calls])


def figures(calls: list[LoadCall], ran_s: float) -> LoadFigures:
    ttfa = [v for c in calls for v in c.ttfa_ms]
    waits = [c.admission_wait_s for c in calls if c.admission_wait_s is not None]
    count = {outcome: sum(1 for c in calls if c.outcome == outcome) for outcome in ("passed", "failed", "refused",
                                                                                    "error")}
    return LoadFigures(
        calls=len(calls), passed=count["passed"], failed=count["failed"], refused=count["refused"],
        errors=count["error"], refusals=sum(c.refusals for c in calls), answers=len(ttfa),
        unanswered_turns=sum(c.unanswered_turns for c in calls),
        ttfa_p50_ms=_round(percentile(ttfa, 50)), ttfa_p95_ms=_round(percentile(ttfa, 95)),
        ttfa_p99_ms=_round(percentile(ttfa, 99)), ttfa_max_ms=_round(max(ttfa)) if ttfa else None,
        admission_wait_p95_s=_round(percentile(waits, 95), 2),
        calls_per_minute=round(60 * len(calls) / ran_s, 1) if ran_s > 0 else 0.0)


def over_time(calls: list[LoadCall], duration_s: float) -> list[LoadBucket]:
    """The run in slices by when each call started (calls started after the last slice join it)."""
    width = max(MIN_BUCKET_S, duration_s / BUCKETS)
    slices = max(1, round(duration_s / width))
    buckets = [LoadBucket(from_s=round(i * width, 1), to_s=round((i + 1) * width, 1)) for i in range(slices)]
    samples: list[list[float]] = [[] for _ in buckets]
    for call in calls:
        index = min(int(call.started_s // width), slices - 1)
        bucket = buckets[index]
        bucket.calls_started += 1
        bucket.passed += call.outcome == "passed"
        bucket.failed += call.outcome != "passed"
        bucket.refusals += call.refusals
        samples[index] += call.ttfa_ms
    for bucket, values in zip(buckets, samples):
        bucket.ttfa_p50_ms, bucket.ttfa_p95_ms = _round(percentile(values, 50)), _round(percentile(values, 95))
    return buckets


def ratio(loaded: float | None, single: float | None) -> float | None:
    return round(loaded / single, 2) if loaded is not None and single else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
