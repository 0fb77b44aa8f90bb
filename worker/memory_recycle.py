"""Memory recycling: a worker whose resident memory passes spec.limits.memoryRecycleMb drains and restarts.

Pipecat users report leaks of about 1 MB per conversation-minute; left alone a long-lived worker grows until the
kubelet OOM-kills it, which cuts every call it serves at once. Recycling does the same restart on the worker's
own terms: it stops taking calls, lets the live ones finish, then exits (voxfleet.worker.main.EXIT_RECYCLE) and
the kubelet restarts the container.

The sample is one read of /proc/self/statm (resident pages), every few seconds: a few microseconds, no
dependency, on the event loop. It starts only once the worker is warm, and a limit the warm, idle worker is
already past disables recycling (with one error line): restarting could never bring it under, and a worker
restarting in a loop serves no call at all. Past the limit is judged on two samples in a row, so one short
spike (a large frame burst) does not cost a restart.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import structlog

log = structlog.get_logger("voxfleet.worker")

MIB = 1 << 20
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SAMPLES_OVER_LIMIT = 2


def resident_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (this one by default) in bytes; 0 when /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryRecycler:
    """Samples this process's RSS; calls `recycle(rss_bytes)` once, when it stays past `limit_mb`."""

    def __init__(self, limit_mb: int | None, *, interval_seconds: float, recycle: Callable[[int], None]):
        self.limit_bytes = limit_mb * MIB if limit_mb else None
        self.interval_seconds = interval_seconds
        self._recycle = recycle
        self.last_rss = 0
        self.idle_rss = 0
        self.triggered = False

    async def watch(self) -> None:
        """Run until past the limit (then recycle once and return) or cancelled."""
        if self.limit_bytes is None:
            return
        self.idle_rss = self.last_rss = resident_bytes()
        if self.idle_rss >= self.limit_bytes:
            log.error("memory recycling disabled: the idle worker is already past the limit",
                      rss_mib=round(self.idle_rss / MIB, 1), limit_mib=round(self.limit_bytes / MIB, 1))
            return
        log.info("memory recycling", limit_mib=round(self.limit_bytes / MIB, 1),
                 idle_rss_mib=round(self.idle_rss / MIB, 1), interval_seconds=self.interval_seconds)
        over = 0
        while True:
            await asyncio.sleep(self.interval_seconds)
            self.last_rss = resident_bytes()
            over = over + 1 if self.last_rss > self.limit_bytes else 0
            if over >= SAMPLES_OVER_LIMIT:
                self.triggered = True
                self._recycle(self.last_rss)
                return
