"""A VoiceAgent's status from what the operator observed (pure): per-region figures, totals, and the Ready,
Progressing and Degraded conditions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxfleet.operator import conditions
from voxfleet.operator.spec_checks import Problem


@dataclass(frozen=True)
class RegionFigures:
    name: str
    desired: int
    ready: int = 0
    updated: int = 0  # pods running the current pod template
    active: int = 0
    free: int = 0
    draining: bool = False  # the region left the spec: its pool drains, then goes
    has_pool: bool = True
    rolled_out: bool = True  # no pod of an older template left (Deployment rollout complete)
    spare: str = ""  # why the pool is larger than its buffer: the worker-loss spare (scaling.Recommendation.note)

    @property
    def settled(self) -> bool:
        return self.rolled_out and self.ready >= self.desired and self.updated >= self.desired

    def wire(self) -> dict[str, Any]:
        return {"name": self.name, "desiredWorkers": self.desired, "readyWorkers": self.ready,
                "activeSessions": self.active, "freeSlots": self.free}


def _ready(regions: list[RegionFigures], problems: list[Problem]) -> conditions.Wanted:
    blocking = [p for p in problems if p.blocking]
    if blocking:
        return conditions.Wanted("Ready", "False", blocking[0].reason, blocking[0].message)
    pools = [r for r in regions if r.has_pool and not r.draining]
    if not pools:
        return conditions.Wanted("Ready", "False", "NoPools", "no region of the spec can have a pool")
    spares = "".join(f"; {r.name}: {r.spare}" for r in pools if r.spare)
    waiting = [r for r in pools if not r.settled]
    if waiting:
        detail = "; ".join(f"{r.name}: {r.ready}/{r.desired} ready, {r.updated} updated" for r in waiting)
        return conditions.Wanted("Ready", "False", "WorkersNotReady", detail + spares)
    total = sum(r.ready for r in pools)
    return conditions.Wanted("Ready", "True", "PoolsReady",
                             f"{total} worker(s) ready in {len(pools)} region(s){spares}")


def _progressing(regions: list[RegionFigures]) -> conditions.Wanted:
    draining = [r.name for r in regions if r.draining]
    rolling = [r.name for r in regions if r.has_pool and not r.draining
               and (r.updated < r.desired or not r.rolled_out)]
    scaling = [r.name for r in regions if r.has_pool and not r.draining and r.ready < r.desired]
    if rolling:
        return conditions.Wanted("Progressing", "True", "RollingOut", f"rolling out in {', '.join(rolling)}")
    if scaling:
        return conditions.Wanted("Progressing", "True", "ScalingUp", f"starting workers in {', '.join(scaling)}")
    if draining:
        return conditions.Wanted("Progressing", "True", "DrainingRegion",
                                 f"draining removed region(s) {', '.join(draining)}: their calls finish first")
    return conditions.Wanted("Progressing", "False", "Stable", "pools match the spec")


def _degraded(problems: list[Problem]) -> conditions.Wanted:
    if not problems:
        return conditions.Wanted("Degraded", "False", "AsExpected", "")
    reason = problems[0].reason if len({p.reason for p in problems}) == 1 else "MultipleProblems"
    return conditions.Wanted("Degraded", "True", reason, "; ".join(p.message for p in problems))


def build_agent_status(generation: int | None, spec_regions: list[str], regions: list[RegionFigures],
                       problems: list[Problem], previous: dict[str, Any] | None, now: str | None = None
                       ) -> dict[str, Any]:
    live = [r for r in regions if not r.draining]
    wanted = [_ready(regions, problems), _progressing(regions), _degraded(problems)]
    return {
        "observedGeneration": generation,
        "regions": [r.wire() for r in regions],
        "regionNames": ",".join(spec_regions),
        "readyWorkers": sum(r.ready for r in live),
        "activeSessions": sum(r.active for r in regions),
        "freeSlots": sum(r.free for r in live),
        "conditions": conditions.merge((previous or {}).get("conditions"), wanted, generation, now),
    }


def status_differs(new: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """Only the fields we own: anything else a newer CRD adds is not a reason to write."""
    previous = previous or {}
    return any(previous.get(key) != value for key, value in new.items())


def figures_differ(new: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """Whether anything but the conditions' messages changed (the figures, or what meaning_differs reads).
    A change of wording alone ("rolling out in us-east, eu-west" -> "in us-east") is the slowest to matter:
    while 5,000 new agents' pools settled region by region it was a third of the operator's status writes."""
    def without_messages(status: dict[str, Any] | None) -> dict[str, Any]:
        status = status or {}
        return {**status, "conditions": [{k: v for k, v in c.items() if k != "message"}
                                         for c in status.get("conditions") or []]}
    return without_messages(new) != without_messages(previous)


def meaning_differs(new: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """A change a reader acts on: another observed generation, or a condition with another status or reason
    (not only its message's figures)."""
    previous = previous or {}

    def meaning(status: dict[str, Any]) -> tuple[Any, ...]:
        return status.get("observedGeneration"), sorted(
            (c.get("type"), c.get("status"), c.get("reason")) for c in status.get("conditions") or [])
    return meaning(new) != meaning(previous)
