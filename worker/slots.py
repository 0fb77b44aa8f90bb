"""The worker's session slots: the single authority on how many calls this worker runs.

A claim is atomic (no await between the check and the insert, and the event loop runs one coroutine at a
time), idempotent per session id (the same id answers the same session, never a second slot), and refused
when the worker is full or draining. Ended sessions are remembered (bounded) so a retried dispatch of an
ended session gets its final state rather than a new call.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from voxfleet.api.wire import DispatchRequest


class SlotHolder(Protocol):
    request: DispatchRequest

    @property
    def ended(self) -> bool: ...


S = TypeVar("S", bound=SlotHolder)


class SlotRefused(Exception):
    """A dispatch the worker will not take; `code` is the ErrorBody code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class SlotTable(Generic[S]):
    def __init__(self, capacity: int, *, ended_kept: int = 1000):
        self.capacity = capacity
        self.draining = False
        self._live: dict[str, S] = {}
        self._ended: OrderedDict[str, S] = OrderedDict()
        self._ended_kept = ended_kept
        self._last_busy = time.monotonic()

    def claim(self, request: DispatchRequest, make: Callable[[DispatchRequest], S]) -> tuple[S, bool]:
        """The session for this request and whether it is new. Raises SlotRefused."""
        existing = self._live.get(request.session_id) or self._ended.get(request.session_id)
        if existing is not None:
            if _identity(existing.request) != _identity(request):
                raise SlotRefused("session_conflict",
                                  f"session {request.session_id} already exists with a different room or agent;"
                                  " a session id names one call")
            return existing, False
        if self.draining:
            raise SlotRefused("draining", "this worker is draining (shutting down); dispatch to another worker")
        if len(self._live) >= self.capacity:
            raise SlotRefused("worker_full", f"all {self.capacity} slots of this worker are in use;"
                                             " dispatch to another worker")
        session = make(request)
        self._live[request.session_id] = session
        self._last_busy = time.monotonic()
        return session, True

    def release(self, session_id: str) -> None:
        """Free the slot (idempotent); the session stays answerable as ended."""
        session = self._live.pop(session_id, None)
        if session is None:
            return
        self._ended[session_id] = session
        while len(self._ended) > self._ended_kept:
            self._ended.popitem(last=False)
        self._last_busy = time.monotonic()

    def get(self, session_id: str) -> S | None:
        return self._live.get(session_id) or self._ended.get(session_id)

    def live(self) -> list[S]:
        return list(self._live.values())

    @property
    def active(self) -> int:
        return len(self._live)

    def free(self, *, ready: bool) -> int:
        if not ready or self.draining:
            return 0
        return max(0, self.capacity - len(self._live))

    def idle_seconds(self) -> float:
        return 0.0 if self._live else time.monotonic() - self._last_busy


def _identity(request: DispatchRequest) -> tuple[str, ...]:
    return (request.tenant, request.agent, request.room, request.agent_identity)
