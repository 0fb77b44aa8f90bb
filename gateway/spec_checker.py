"""Checking an agent spec off the gateway's event loop, in a process of its own, cached by content.

The costly part of admission (every RE2 pattern compiled under the spec's budget, tool schemas meta-validated)
takes up to ~0.1 s of one core for the worst spec within the limits. Measured on this project's shared 2-core
machine, with an event loop ticking every 2 ms while the worst accepted spec was checked:
- on the loop: one stall of the whole check (~120 ms);
- in a thread: loop lag p99 ~15 ms, because google-re2 holds the GIL while it compiles (~16 ms per pattern at
  the per-pattern cap) and pydantic holds it while it validates;
- in a process: loop lag p99 ~4 ms, as on a quiet loop (p99 ~2 ms, max ~10 ms on a shared machine).
So a child process (`python -m voxfleet.gateway.spec_check_process`, JSON lines over its stdin/stdout; not
multiprocessing, which re-imports the parent's __main__ in the child): a tenant submitting costly specs in a
loop queues behind itself and takes at most that one core, never the loop's. A check that outlasts
CHECK_TIMEOUT_S kills the child (a new one starts) and answers 503.

Results are kept by the SHA-256 of the canonical JSON of the spec (the same spec checked twice costs a lookup),
and concurrent checks of the same content share one run. Each tenant has at most one check waiting for the child
at a time: a tenant sending many costly PUTs at once queues them behind each other, and another tenant's PUT
waits for at most one check per tenant ahead of it, never for the whole backlog.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections import OrderedDict
from typing import Any

import structlog

from voxfleet.gateway import agent_writes
from voxfleet.gateway.api_errors import ApiError

log = structlog.get_logger(__name__)

CACHE_ENTRIES = 256
CHECK_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0  # the first check includes the child's start and imports: slow on a busy machine
LINE_LIMIT = 8 * 1024 * 1024  # one JSON line each way; bodies are far smaller (the request limit)


def content_key(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class _CheckingProcess:
    """One child process answering one check at a time."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            self._process = await asyncio.create_subprocess_exec(
                # -P: the working directory stays off sys.path (a checkout's operator/ folder would shadow the
                # standard library's operator module).
                sys.executable, "-P", "-m", "voxfleet.gateway.spec_check_process", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT)
        return self._process

    async def run(self, body: dict[str, Any], timeout: float = CHECK_TIMEOUT_S) -> agent_writes.SpecOutcome:
        async with self._lock:
            if self._process is None or self._process.returncode is not None:
                timeout = max(timeout, START_TIMEOUT_S)
            process = await self._started()
            assert process.stdin is not None and process.stdout is not None
            try:
                async with asyncio.timeout(timeout):
                    process.stdin.write(json.dumps(body, separators=(",", ":")).encode() + b"\n")
                    await process.stdin.drain()
                    line = await process.stdout.readline()
                if not line:
                    raise ConnectionError("the checking process ended")
                return agent_writes.SpecOutcome.from_wire(json.loads(line))
            except (TimeoutError, ConnectionError, ValueError) as error:
                log.warning("spec check failed; restarting the checking process", error=type(error).__name__)
                self.stop()
                raise ApiError(503, "check_unavailable", "The gateway could not finish checking this spec; try"
                                                         " again shortly.", headers={"Retry-After": "2"}) from None

    def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
        self._process = None


class SpecChecker:
    def __init__(self, cache_entries: int = CACHE_ENTRIES):
        self.cache_entries = cache_entries
        self._child = _CheckingProcess()
        self._done: OrderedDict[str, agent_writes.SpecOutcome] = OrderedDict()
        self._running: dict[str, asyncio.Future[agent_writes.SpecOutcome]] = {}
        self._owners: dict[str, tuple[asyncio.Lock, int]] = {}  # the lock, and how many hold or wait for it

    async def start(self) -> None:
        """Start the process and load the models in it now, so the first PUT does not wait for that. A failure
        here does not stop the gateway: the next check starts another process."""
        try:
            await self._child.run({"regions": [{"name": "warm-up"}]})
        except ApiError:
            log.warning("spec-checking process did not start; the first agent write will start it")

    def stop(self) -> None:
        self._child.stop()

    async def check(self, body: dict[str, Any], owner: str = "") -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
        """agent_writes.checked_spec's answer (raises its ApiError for an invalid spec), computed off the loop.
        `owner` (the tenant) gets one check at a time."""
        key = content_key(body)
        outcome = self._done.get(key)
        if outcome is not None:
            self._done.move_to_end(key)
            return outcome.result()
        lock, users = self._owners.get(owner) or (asyncio.Lock(), 0)
        self._owners[owner] = (lock, users + 1)
        try:
            async with lock:
                outcome = self._done.get(key)
                if outcome is None:
                    running = self._running.get(key)
                    if running is None:
                        running = asyncio.ensure_future(self._child.run(body))
                        self._running[key] = running
                        running.add_done_callback(lambda _: self._running.pop(key, None))
                    outcome = await asyncio.shield(running)
                    self._done[key] = outcome
                    while len(self._done) > self.cache_entries:
                        self._done.popitem(last=False)
        finally:
            lock, users = self._owners[owner]
            if users == 1:
                del self._owners[owner]  # nobody holds or waits for it: tenants come and go
            else:
                self._owners[owner] = (lock, users - 1)
        return outcome.result()
