"""Warm-pool scaling, the Agones buffer idea (pure: no I/O, time passed in).

desired = clamp(ceil((activeSessions + bufferSessions) / sessionsPerWorker), minWorkers, maxWorkers).
Up at once; down only after demand stayed lower for scaleDownDelaySeconds, to the highest recommendation seen in
that window (so a dip and a rise never flap the pool), and never by more workers than are idle: a worker with a
call is never chosen while an idle one exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DELETION_COST_VICTIM = "-1000"  # lower than the default 0: the ReplicaSet removes these first


@dataclass(frozen=True)
class WorkerView:
    """One live (not terminating) worker pod as the scaler sees it."""

    pod: str
    ready: bool
    active: int | None  # None: no fresh report (never answered, or its polls failed for too long)
    free: int = 0
    draining: bool = False
    idle_seconds: float = 0.0
    ever_ready: bool = False  # a pod that never became ready cannot hold a call


def recommend(active_sessions: int, buffer_sessions: int, sessions_per_worker: int, min_workers: int,
              max_workers: int) -> int:
    wanted = math.ceil((active_sessions + buffer_sessions) / sessions_per_worker)
    return max(min_workers, min(max_workers, wanted))


def removable(workers: list[WorkerView]) -> list[WorkerView]:
    """Workers that certainly hold no call, idlest first: reported idle, or never ready."""
    idle = [w for w in workers if w.active == 0 and not w.draining]
    never_ready = [w for w in workers if w.active is None and not w.ever_ready and not w.ready]
    return never_ready + sorted(idle, key=lambda w: -w.idle_seconds)


@dataclass
class PoolScaler:
    """The scaling memory of one pool (agent x region). Lost on restart, which only delays a scale-down."""

    desired: int
    below_since: float | None = None
    window_max: int = 0
    last_change: float = 0.0
    history: list[tuple[float, int]] = field(default_factory=list)  # (time, desired) changes, for the tests' eyes

    def step(self, recommendation: int, now: float, delay: float, workers: list[WorkerView]) -> list[str]:
        """Advance one poll round. Returns the pods to remove (empty unless scaling down now)."""
        if recommendation >= self.desired:
            self.below_since = None
            if recommendation > self.desired:
                self._set(recommendation, now)
            return []
        if self.below_since is None:
            self.below_since, self.window_max = now, recommendation
            return []
        self.window_max = max(self.window_max, recommendation)
        if now - self.below_since < delay:
            return []
        candidates = removable(workers)
        # Pods the Deployment wants but that don't exist (e.g. refused by the quota) go without a victim.
        missing = max(0, self.desired - len(workers))
        count = min(self.desired - self.window_max, len(candidates) + missing)
        self.below_since = None
        if count <= 0:
            return []
        self._set(self.desired - count, now)
        victims_needed = max(0, count - missing)
        return [w.pod for w in candidates[:victims_needed]]

    def clamp(self, min_workers: int, max_workers: int, now: float) -> None:
        """A spec edit of the bounds applies at once."""
        bounded = max(min_workers, min(max_workers, self.desired))
        if bounded != self.desired:
            self._set(bounded, now)
            self.below_since = None

    def _set(self, desired: int, now: float) -> None:
        self.desired = desired
        self.last_change = now
        self.history.append((now, desired))
        del self.history[:-20]
