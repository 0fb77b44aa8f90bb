"""Waking up when the worker pods change, so a recovery that found no free worker tries again the moment one
turns Ready (a restarted pod, a new one of the pool) instead of on its next poll.

It listens to the worker registry's own Pod informer, after the registry (handlers run in the order they were
added, and the registry adds its handler when it is built), so a woken waiter reads a registry that already
holds the change. Any Pod change wakes every waiter: they re-check what they need, which costs a look at the
registry, and a slot freed on a worker (no Pod change) is still found by the waiter's own bounded backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from voxfleet.gateway.worker_registry import WorkerRegistry
from voxfleet.kube.informer import InformerEvent


class WorkerChanges:
    def __init__(self, registry: WorkerRegistry):
        self._waiters: set[asyncio.Future[None]] = set()
        registry.cache.add_handler(self._on_pod_event)

    def _on_pod_event(self, _event: InformerEvent[dict[str, Any]]) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Until the next worker Pod change or ``timeout`` seconds; True if a change woke it."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return waiter.done()
        finally:
            self._waiters.discard(waiter)
            if not waiter.done():
                waiter.cancel()
