"""Finding a session from its signed id alone: first the worker the id names, then (when that worker is gone
or the session was recovered elsewhere) the tenant's other live workers that could host its room."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from voxfleet.api.wire import SessionState
from voxfleet.gateway.livekit_rooms import LiveKitRooms
from voxfleet.gateway.session_ids import SessionRef
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.gateway.worker_registry import Worker, WorkerRegistry


@dataclass(frozen=True)
class Located:
    worker: Worker
    state: SessionState


class SessionLocator:
    def __init__(self, registry: WorkerRegistry, client: WorkerClient, rooms: LiveKitRooms):
        self.registry = registry
        self.client = client
        self.rooms = rooms

    async def locate(self, tenant: str, session_id: str, ref: SessionRef) -> list[Located]:
        """Every worker of the tenant that knows the session, the live (not ended) ones first."""
        named = self.registry.at_ip(ref.worker_ip)
        found: list[Located] = []
        if named is not None and named.tenant == tenant and named.alive:
            state = await self.client.session(ref.worker_ip, session_id)
            if state is not None and state.tenant == tenant:
                found.append(Located(named, state))
                if state.phase != "ended" and not state.recovery:
                    return found  # the common case: where it started, still running, never moved
        regions = set(self.rooms.same_livekit(ref.region)) or {ref.region}
        others = [w for w in self.registry.tenant_workers(tenant)
                  if w.alive and w.region in regions and (named is None or w.uid != named.uid)]
        states = await asyncio.gather(*(self.client.session(w.ip or "", session_id) for w in others))
        found += [Located(w, s) for w, s in zip(others, states) if s is not None and s.tenant == tenant]
        found.sort(key=lambda located: (located.state.phase == "ended", -located.state.started_at.timestamp()))
        return found
