"""Killing a worker the way a native crash would: SIGKILL to the `voxfleet worker` process the pod runner started
for a pod (found by its downward-API env, VOXFLEET_POD_NAME), timed on this process's monotonic clock."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def worker_pid(pod: str) -> int | None:
    """The `voxfleet worker` process running for ``pod``, if any."""
    marker = f"VOXFLEET_POD_NAME={pod}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") \
                    and b"worker" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def kill_worker(pod: str) -> float:
    """SIGKILL the pod's worker process; returns when it was sent (time.monotonic())."""
    pid = worker_pid(pod)
    if pid is None:
        raise AssertionError(f"no worker process for pod {pod}")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return killed_at
