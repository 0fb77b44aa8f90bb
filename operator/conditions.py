"""Kubernetes-style conditions: the wanted (type, status, reason, message) merged into what status already holds,
keeping lastTransitionTime unless the status really changed, so an unchanged picture compares equal and costs
no write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

MAX_MESSAGE = 2048


@dataclass(frozen=True)
class Wanted:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str = ""


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge(existing: list[dict[str, Any]] | None, wanted: list[Wanted], generation: int | None,
          now: str | None = None) -> list[dict[str, Any]]:
    previous = {c.get("type"): c for c in existing or []}
    merged = []
    for want in wanted:
        before = previous.get(want.type)
        moved = before is None or before.get("status") != want.status
        condition: dict[str, Any] = {
            "type": want.type,
            "status": want.status,
            "reason": want.reason,
            "message": want.message[:MAX_MESSAGE],
            "lastTransitionTime": (now or now_iso()) if moved else before.get("lastTransitionTime") or now_iso(),
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        merged.append(condition)
    return merged


def find(conditions: list[dict[str, Any]] | None, kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == kind), None)
