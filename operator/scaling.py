"""Warm-pool scaling, the Agones buffer idea plus a spare for the loss of one worker (pure: no I/O, time passed in).

buffer = ceil((activeSessions + bufferSessions) / sessionsPerWorker)
spare (spareCapacity WorkerLoss, while the region has live calls) = ceil(activeSessions / sessionsPerWorker) + 1
desired = clamp(max(buffer, spare), minWorkers, maxWorkers), the spare's part also within the tenant's pod quota.

Why ceil(active / spw) + 1 is the whole rule: N workers of spw slots hold `active` calls; the lost worker held
m of them, so the others have (N - 1) * spw - (active - m) free slots, and these take its m calls exactly when
(N - 1) * spw >= active. m cancels out: it holds whatever the spread (the gateway's emptiest-first placement or
any other), so the per-worker loads are not needed to size the pool, only to see who is busiest. A draining
worker (rollout, recycle) holds calls but offers no slot: its loss must fit on the live workers, N * spw -
active >= its calls, which the rule's + 1 covers unless the live workers are idle (then its calls alone count).
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


SPARE_FOR_WORKER_LOSS = "WorkerLoss"
BUFFER_ONLY = "BufferOnly"


def recommend(active_sessions: int, buffer_sessions: int, sessions_per_worker: int, min_workers: int,
              max_workers: int) -> int:
    wanted = math.ceil((active_sessions + buffer_sessions) / sessions_per_worker)
    return max(min_workers, min(max_workers, wanted))


def workers_for_worker_loss(active_sessions: int, sessions_per_worker: int, busiest_draining: int = 0) -> int:
    """The fewest live workers that can take every call of any one lost worker (0 with no calls at all).

    active_sessions: calls on live (not draining) workers; busiest_draining: the most calls on one draining
    worker, whose loss must fit in the live workers' free slots."""
    if active_sessions <= 0 and busiest_draining <= 0:
        return 0
    survive_a_live_loss = math.ceil(active_sessions / sessions_per_worker) + 1 if active_sessions > 0 else 0
    survive_a_draining_loss = math.ceil((active_sessions + busiest_draining) / sessions_per_worker)
    return max(survive_a_live_loss, survive_a_draining_loss)


@dataclass(frozen=True)
class Recommendation:
    """How many workers a pool wants, and why: what the buffer alone asks, and how many more the spare adds."""

    workers: int
    for_buffer: int  # the BufferOnly answer (bounds applied)
    spare: int  # workers on top of for_buffer kept for the loss of one worker
    short_by: int = 0  # spare workers maxWorkers or the tenant's pod quota left out
    limit: str = ""  # "maxWorkers" or "quota" when short_by > 0

    @property
    def note(self) -> str:
        """For the status: what the spare adds, or what it lacks (empty when the buffer alone decides)."""
        if self.short_by:
            return f"{self.short_by} worker-loss spare worker(s) left out by {self.limit}"
        if self.spare:
            return f"{self.spare} worker-loss spare worker(s) kept for the calls of the busiest worker"
        return ""

    def why(self, active_sessions: int, buffer_sessions: int) -> str:
        said = f"{active_sessions} active call(s) and {buffer_sessions} free slot(s) wanted"
        if self.spare:
            said += f", with {self.spare} worker-loss spare worker(s) so the busiest worker's calls fit on the others"
        if self.short_by:
            said += f"; {self.short_by} worker-loss spare worker(s) left out by {self.limit}"
        return said


def recommend_with_spare(active_sessions: int, buffer_sessions: int, sessions_per_worker: int, min_workers: int,
                         max_workers: int, spare_capacity: str = SPARE_FOR_WORKER_LOSS, busiest_draining: int = 0,
                         quota_room: int | None = None) -> Recommendation:
    """The pool's size under its spareCapacity policy. quota_room: the most workers this pool may have without
    passing the tenant's pod quota (None: unknown). The quota only trims the spare, never the buffer (a buffer the
    quota refuses is the tenant's to see, as QuotaExceeded)."""
    for_buffer = recommend(active_sessions, buffer_sessions, sessions_per_worker, min_workers, max_workers)
    if spare_capacity != SPARE_FOR_WORKER_LOSS:
        return Recommendation(for_buffer, for_buffer, 0)
    wanted = workers_for_worker_loss(active_sessions, sessions_per_worker, busiest_draining)
    if wanted <= for_buffer:
        return Recommendation(for_buffer, for_buffer, 0)
    allowed, limit = max_workers, "maxWorkers"
    if quota_room is not None and quota_room < allowed:
        allowed, limit = quota_room, "quota"
    workers = max(for_buffer, min(wanted, allowed))
    short = wanted - workers
    return Recommendation(workers, for_buffer, workers - for_buffer, short, limit if short else "")


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
