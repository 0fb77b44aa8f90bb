"""Recovery: a call whose worker died gets another warm worker of the same agent, which says a recovery line.

Two signals, whichever comes first: the worker Pod is lost (deleted, or its container stopped or restarted:
the Pod watch), or the agent participant leaves the room while the caller stays (a LiveKit webhook). LiveKit
is the record of which calls a worker had: rooms of the agent on the region's LiveKit, whose agent participant
names the dead pod. The room is *ensured* an agent, then the dead participant is removed (a killed participant
would otherwise linger until LiveKit times it out):

- no caller left: nothing to save, the session is ended wherever a worker still holds it;
- a live agent of another worker is there (already recovered): nothing to do;
- otherwise the session (same id, same room) is dispatched with ``recovery: true``.

Both signals of one loss reach every replica that sees them. Within a replica they are serialised per session,
and a recovery first asks the workers whether one already holds the session (then its agent is on its way).
Across replicas (every replica sees a lost Pod; LiveKit delivers the webhook to one) they agree anyway:
candidates are ordered by rendezvous hashing of the session id over the workers (not by load hints, which
differ between replicas), and a worker answers a repeated dispatch of one session id with the same session, so
racing replicas land on the same worker, once (unless their views of which workers are Ready differ at that
very moment).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass

import structlog
from livekit.protocol import models

from voxfleet.api import room_names
from voxfleet.gateway import session_ids
from voxfleet.gateway.agent_directory import AgentDirectory
from voxfleet.gateway.allocation import Allocator
from voxfleet.gateway.livekit_rooms import LiveKitRooms
from voxfleet.gateway.metrics import GatewayMetrics
from voxfleet.gateway.session_locator import SessionLocator
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.gateway.worker_registry import Worker, WorkerRegistry

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RoomSession:
    """A room of ours: whose it is and, when known, its session (and whether it is an eval run's)."""

    name: room_names.RoomName
    session_id: str | None
    ref: session_ids.SessionRef | None
    eval_mode: bool = False


class SessionRecovery:
    def __init__(self, registry: WorkerRegistry, agents: AgentDirectory, tenants: TenantDirectory,
                 allocator: Allocator, client: WorkerClient, rooms: LiveKitRooms, locator: SessionLocator,
                 metrics: GatewayMetrics, session_keys: list[bytes]):
        self.registry = registry
        self.agents = agents
        self.tenants = tenants
        self.allocator = allocator
        self.client = client
        self.rooms = rooms
        self.locator = locator
        self.metrics = metrics
        self.session_keys = session_keys
        self._tasks: set[asyncio.Task] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    # --- what a room is -------------------------------------------------------------------------------------

    def room_session(self, room: models.Room, participant: models.ParticipantInfo | None = None
                     ) -> RoomSession | None:
        name = room_names.parse_room(room.name, room.metadata)
        if name is None:
            return None
        candidates = [name.rest]
        try:
            metadata = json.loads(room.metadata) if room.metadata else {}
        except ValueError:
            metadata = {}
        if isinstance(metadata, dict) and isinstance(metadata.get(room_names.METADATA_SESSION), str):
            candidates.append(metadata[room_names.METADATA_SESSION])
        if participant is not None and participant.attributes.get(room_names.SESSION_ATTRIBUTE):
            candidates.append(participant.attributes[room_names.SESSION_ATTRIBUTE])
        # The departed agent's token (minted by a gateway) says whether the session is an eval run's.
        eval_mode = participant is not None and participant.attributes.get(room_names.EVAL_ATTRIBUTE) == "true"
        for candidate in candidates:
            ref = session_ids.decode(candidate, tenant=name.tenant, keys=self.session_keys)
            if ref is not None:
                return RoomSession(name, candidate, ref, eval_mode)
        return RoomSession(name, None, None)

    # --- the Pod-watch signal -------------------------------------------------------------------------------

    def worker_lost(self, worker: Worker) -> None:
        """Registry listener (synchronous): recover the worker's calls in the background."""
        task = asyncio.get_running_loop().create_task(self.recover_worker(worker), name=f"recover {worker.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover_worker(self, worker: Worker) -> int:
        """Find the rooms the worker's agent participant was in and ensure each has an agent again."""
        if worker.region not in self.rooms.regions:
            return 0
        started = time.perf_counter()
        try:
            rooms = await self.rooms.list_rooms(worker.region)
        except Exception as error:  # noqa: BLE001 - LiveKit down: the webhook path may still recover
            log.warning("cannot list rooms to recover a lost worker", pod=worker.name, error=type(error).__name__)
            return 0
        mine = [r for r in rooms if (n := room_names.parse_room(r.name, r.metadata)) is not None
                and n.tenant == worker.tenant and n.agent == worker.agent]
        recovered = await asyncio.gather(*(self._recover_room(worker, room) for room in mine))
        count = sum(recovered)
        log.info("lost worker's calls handled", pod=worker.name, rooms_checked=len(mine), recovered=count,
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return count

    async def _recover_room(self, worker: Worker, room: models.Room) -> bool:
        try:
            participants = await self.rooms.participants(worker.region, room.name)
        except Exception:  # noqa: BLE001 - the room just closed
            return False
        dead = [p for p in participants if room_names.agent_identity_pod(p.identity) == worker.name]
        if not dead:
            return False
        recovered = await self.ensure_agent(worker.region, room, dead[0], participants, lost={worker.uid})
        # Only then: a killed participant lingers until LiveKit times it out, so remove it (the caller hears the
        # new agent first; this costs the call nothing).
        for participant in dead:
            try:
                await self.rooms.remove_participant(worker.region, room.name, participant.identity)
            except Exception:  # noqa: BLE001 - already gone
                pass
        return recovered

    # --- the decision ---------------------------------------------------------------------------------------

    async def ensure_agent(self, region: str, room: models.Room, departed: models.ParticipantInfo | None,
                           participants: list[models.ParticipantInfo] | None = None,
                           lost: set[str] | None = None) -> bool:
        """Make sure a room whose agent left still has one while a caller is in it. True if re-dispatched."""
        found = self.room_session(room, departed)
        if found is None or found.session_id is None or found.ref is None:
            return False
        # Both signals of one loss (Pod watch and webhook) land here: one at a time per session, so the second
        # sees what the first did instead of picking a worker of its own.
        async with self._locks.setdefault(found.session_id, asyncio.Lock()):
            try:
                return await self._ensure_agent(region, room, found, participants, set(lost or ()))
            finally:
                lock = self._locks.get(found.session_id)
                if lock is not None and not lock._waiters:  # noqa: SLF001 - drop idle locks
                    self._locks.pop(found.session_id, None)

    async def _ensure_agent(self, region: str, room: models.Room, found: RoomSession,
                            participants: list[models.ParticipantInfo] | None, lost: set[str]) -> bool:
        assert found.session_id is not None and found.ref is not None
        if participants is None:
            try:
                participants = await self.rooms.participants(region, room.name)
            except Exception:  # noqa: BLE001 - the room is gone: so is the call
                return False
        callers = [p for p in participants if not room_names.is_agent_identity(p.identity)]
        live_agents = [p for p in participants if self._agent_alive(p, found.name.tenant, lost)]
        labels = (found.name.tenant, found.name.agent, region)
        if not callers:
            await self.end_session(found)
            return False
        if live_agents:
            return False
        holders = [x for x in await self.locator.locate(found.name.tenant, found.session_id, found.ref)
                   if x.state.phase != "ended" and x.worker.uid not in lost]
        if holders:
            return False  # already re-dispatched (by the other signal, or another replica): its agent is joining
        agent = self.agents.get(self._namespace(found.name.tenant), found.name.agent)
        if agent is None:
            self.metrics.recoveries.labels(*labels, "no_agent").inc()
            return False
        regions = [r for r in self.rooms.same_livekit(region) if r in agent.regions]
        candidates = [w for r in regions for w in self.registry.ready_workers(found.name.tenant, agent.name, r)
                      if w.uid not in lost]
        candidates.sort(key=lambda w: _rendezvous(found.session_id or "", w.uid))
        caller = callers[0].identity
        claimed = await self.allocator.redispatch(
            tenant=found.name.tenant, agent=agent, session_id=found.session_id, room=room.name,
            nonce_hex=found.ref.nonce_hex, regions=regions, exclude=lost, caller_identity=caller,
            candidates=candidates, eval_mode=found.eval_mode)
        result = "ok" if claimed is not None else "no_capacity"
        self.metrics.recoveries.labels(*labels, result).inc()
        log.info("session recovery", session_id=found.session_id, tenant=found.name.tenant, agent=agent.name,
                 room=room.name, result=result, pod=claimed.worker.name if claimed else None,
                 eval_mode=found.eval_mode)
        return claimed is not None

    def _agent_alive(self, participant: models.ParticipantInfo, tenant: str, lost: set[str]) -> bool:
        pod = room_names.agent_identity_pod(participant.identity)
        if pod is None:
            return False
        worker = next((w for w in self.registry.tenant_workers(tenant) if w.name == pod), None)
        return worker is not None and worker.alive and worker.uid not in lost

    def _namespace(self, tenant: str) -> str:
        info = self.tenants.get(tenant)
        return info.namespace if info else f"tenant-{tenant}"

    async def end_session(self, found: RoomSession) -> int:
        """End the session wherever a worker still runs it; the number of workers told."""
        if found.session_id is None or found.ref is None:
            return 0
        located = await self.locator.locate(found.name.tenant, found.session_id, found.ref)
        running = [x for x in located if x.state.phase != "ended"]
        await asyncio.gather(*(self.client.end_session(x.worker.ip or "", found.session_id) for x in running))
        return len(running)


def _rendezvous(session_id: str, worker_uid: str) -> bytes:
    """Highest-random-weight order: every replica ranks the workers the same way for one session."""
    return hashlib.sha256(f"{session_id}/{worker_uid}".encode()).digest()
