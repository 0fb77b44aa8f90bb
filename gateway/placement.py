"""Where to try a new session: regions nearest the caller first, then the emptiest workers in each region.

Pure functions over what the registry knows; the slot itself is claimed at the worker, so a stale hint costs
at most one more attempt (409 -> next candidate), never a slot given twice.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

W = TypeVar("W")


def region_order(agent_regions: Sequence[str], *, usable: set[str], preference: str | None,
                 caller_region: str | None, default_origin: str | None,
                 latency_ms: dict[str, dict[str, float]]) -> list[str]:
    """The agent's usable regions, the preferred one first, then by latency from the caller.

    The caller is assumed to be in ``caller_region``, else in the preferred region, else at the default
    origin; with none of these the agent's own region order stands. Missing matrix entries count as far.
    """
    eligible = [region for region in agent_regions if region in usable]
    origin = caller_region or preference or default_origin

    def distance(region: str) -> float:
        if origin is None or region == origin:
            return 0.0
        row = latency_ms.get(origin, {})
        if region in row:
            return row[region]
        return latency_ms.get(region, {}).get(origin, math.inf)  # the matrix may be given one-way only

    ordered = sorted(eligible, key=lambda region: (distance(region), agent_regions.index(region)))
    if preference in ordered:
        ordered.remove(preference)
        ordered.insert(0, preference)
    return ordered


def worker_order(workers: Sequence[W], free_hint: Callable[[W], int | None], *,
                 rng: random.Random | None = None) -> list[W]:
    """Most free slots first (unknown counts as some free), ties shuffled so replicas spread their claims;
    workers known to be full go last, still worth a try since the hint may be stale."""
    rng = rng or random
    keyed = []
    for worker in workers:
        free = free_hint(worker)
        rank = 1 if free is None else (2 + free if free > 0 else 0)
        keyed.append((-rank, rng.random(), worker))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [worker for _, _, worker in keyed]
