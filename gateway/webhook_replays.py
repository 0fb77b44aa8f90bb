"""Refusing replayed webhook deliveries: the event ids seen within the window a delivery stays valid."""

from __future__ import annotations

import time
from collections import OrderedDict


class ReplayGuard:
    """Event ids seen in the last window (bounded), to refuse a delivery seen before."""

    def __init__(self, window_seconds: float, max_entries: int = 100_000):
        self.window = window_seconds
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, event_id: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        while self._seen and (next(iter(self._seen.values())) < now - self.window
                              or len(self._seen) > self.max_entries):
            self._seen.popitem(last=False)
        if event_id in self._seen:
            return False
        self._seen[event_id] = now
        return True
