"""Polling with a deadline, for tests that wait on the cluster (says what it waited for when it gives up).

Waiting is not what these tests judge (timing requirements are asserted separately), so every deadline is
stretched by VOXFLEET_TEST_WAIT_SLACK (default 3): a busy 2-core CI machine must not turn "not yet" into a failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
WAIT_SLACK = float(os.environ.get("VOXFLEET_TEST_WAIT_SLACK", "3"))


def wait_for(what: str, probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout * WAIT_SLACK
    last = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - "not yet"; reported if the deadline passes
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * WAIT_SLACK:.0f} s waiting for {what}; last: {last!r}")
        time.sleep(interval)
