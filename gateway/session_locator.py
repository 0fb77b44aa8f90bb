"""Finding a session from its signed id alone: first the worker the id names, then (when that worker is gone
or the session was recovered elsewhere) the tenant's other live workers of the regions the room's LiveKit
serves, then (a recovery may have sent it to another region's worker, joining the same room) the rest."""

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
        others = [w for w in self.registry.tenant_workers(tenant) if w.alive and (named is None or w.uid != named.uid)]
        near = [w for w in others if w.region in regions]
        found += await self._ask(near, tenant, session_id)
        if not any(located.state.phase != "ended" for located in found):
            # A recovery may have moved it to a worker of another region, which joined the room's LiveKit.
            found += await self._ask([w for w in others if w.region not in regions], tenant, session_id)
        found.sort(key=lambda located: (located.state.phase == "ended", -located.state.started_at.timestamp()))
        return found

    async def _ask(self, workers: list[Worker], tenant: str, session_id: str) -> list[Located]:
        states = await asyncio.gather(*(self.client.session(w.ip or "", session_id) for w in workers))
        return [Located(w, s) for w, s in zip(workers, states) if s is not None and s.tenant == tenant]
