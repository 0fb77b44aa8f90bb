"""A keyed work queue: each key is reconciled by one worker at a time, repeated adds collapse into one pending
run, failures retry with exponential backoff, and a reconcile may ask to be run again after a delay.

Keys carry a `full` flag: a full reconcile applies objects, a light one only refreshes status; a pending full
run absorbs a light one, and full runs go first (a new agent's pools matter more than a figure in a status).
Background runs (the periodic resync) are full runs that wait until nothing else is pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable

import structlog

log = structlog.get_logger("voxfleet.operator.queue")

# (key, full) -> seconds until the next run wanted, or None
Reconcile = Callable[[Hashable, bool], Awaitable[float | None]]


class ReconcileQueue:
    def __init__(self, reconcile: Reconcile, *, workers: int, retry_min: float, retry_max: float):
        self.reconcile = reconcile
        self.workers = workers
        self.retry_min, self.retry_max = retry_min, retry_max
        self.full: dict[Hashable, None] = {}  # pending full runs, FIFO (dicts keep insertion order)
        self.light: dict[Hashable, None] = {}  # pending status-only runs, FIFO
        self.background: dict[Hashable, None] = {}  # pending full runs nobody is waiting for (resync)
        self.running: set[Hashable] = set()
        self.failures: dict[Hashable, int] = {}
        self._wakeup = asyncio.Event()
        self._timers: dict[Hashable, tuple[asyncio.TimerHandle, bool, float]] = {}  # key -> (timer, full, due)
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, key: Hashable, *, full: bool = True, delay: float = 0.0, background: bool = False) -> None:
        if background:
            if key not in self.full:
                self.background[key] = None
                self.idle.clear()
                self._wakeup.set()
            return
        if delay > 0:
            loop = asyncio.get_running_loop()
            due = loop.time() + delay
            scheduled = self._timers.get(key)
            if scheduled is not None:
                timer, was_full, was_due = scheduled
                full = full or was_full
                if was_due <= due:  # the earlier run stays; it now also carries a full reconcile if asked
                    self._timers[key] = (timer, full, was_due)
                    return
                timer.cancel()
            self._timers[key] = (loop.call_at(due, self._fire, key), full, due)
            return
        if full:
            self.light.pop(key, None)
            self.background.pop(key, None)
            self.full[key] = None
        elif key not in self.full:
            self.light[key] = None
        self.idle.clear()
        self._wakeup.set()

    def _fire(self, key: Hashable) -> None:
        _, full, _ = self._timers.pop(key)
        self.add(key, full=full)

    def __len__(self) -> int:
        return len(self.full) + len(self.light) + len(self.background) + len(self.running)

    def _any_pending(self) -> bool:
        return bool(self.full or self.light or self.background)

    def _pending(self, key: Hashable) -> bool:
        return key in self.full or key in self.light or key in self.background

    def _take(self) -> tuple[Hashable, bool] | None:
        for queue, full in ((self.full, True), (self.light, False), (self.background, True)):
            for key in queue:
                if key not in self.running:
                    del queue[key]
                    return key, full
        return None

    async def run(self) -> None:
        await asyncio.gather(*(self._worker() for _ in range(self.workers)))

    async def _worker(self) -> None:
        while True:
            item = self._take()
            if item is None:
                if not self.running and not self._any_pending():
                    self.idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            key, full = item
            self.running.add(key)
            try:
                again = await self.reconcile(key, full)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - one bad object must not stop the others
                failures = self.failures.get(key, 0) + 1
                self.failures[key] = failures
                delay = min(self.retry_max, self.retry_min * 2 ** (failures - 1))
                log.warning("reconcile failed, retrying", key=str(key), error=str(error)[:500], retry_in=delay,
                            failures=failures)
                self.add(key, full=True, delay=delay)
            else:
                self.failures.pop(key, None)
                if again:
                    self.add(key, full=True, delay=again)
            finally:
                self.running.discard(key)
                if self._pending(key):
                    self._wakeup.set()  # it was added again while running
