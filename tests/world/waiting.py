"""Polling with a deadline, for tests that wait on the cluster (says what it waited for when it gives up)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - "not yet"; reported if the deadline passes
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last result: {last!r}")
        time.sleep(interval)
