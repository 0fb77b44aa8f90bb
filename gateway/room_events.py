"""What LiveKit room events mean for sessions (the webhook has already verified them).

- room_started for a room named for an agent (``<tenant>.<agent>.<rest>``, or metadata naming it) that no API
  session created, e.g. an inbound SIP call: claim a worker for it, and note the session id in the room's
  metadata so later events of the room find the session.
- participant_left / participant_connection_aborted of the agent while the caller stays: recovery (unless the
  worker itself ended the session), in the background: it may go on until the agent's recovery deadline. Of
  the last caller: the session ends at its worker.
- room_finished: the session ends at its worker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import structlog
from livekit.protocol import models

from voxfleet.api import room_names
from voxfleet.gateway.agent_directory import AgentDirectory
from voxfleet.gateway.allocation import Allocation, Allocator
from voxfleet.gateway.api_errors import ApiError
from voxfleet.gateway.livekit_rooms import LiveKitRooms
from voxfleet.gateway.recovery import Incarnation, Loss, SessionRecovery, incarnation
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.gateway.worker_registry import WorkerRegistry

log = structlog.get_logger(__name__)

# (tenant, agent, allocation) of a call placed for a room started outside the API: its call-history row (app.py sets
# it when the gateway has a database).
Dispatched = Callable[[str, str, Allocation], Awaitable[None]]

ROOM_START_RETRY_SECONDS = 10.0  # a SIP caller waits this long for a worker before the room is closed
REJOIN_SKEW_SECONDS = 1.0  # clock skew allowed between a worker and LiveKit (join times are whole seconds)


class RoomEvents:
    def __init__(self, registry: WorkerRegistry, agents: AgentDirectory, tenants: TenantDirectory,
                 allocator: Allocator, client: WorkerClient, rooms: LiveKitRooms, recovery: SessionRecovery):
        self.registry = registry
        self.agents = agents
        self.tenants = tenants
        self.allocator = allocator
        self.client = client
        self.rooms = rooms
        self.recovery = recovery
        self._started_rooms: dict[str, None] = {}  # room sids this replica dispatched (LiveKit may retry)
        self.on_dispatched: Dispatched | None = None

    async def room_started(self, region: str, room: models.Room) -> str:
        found = self.recovery.room_session(room)
        if found is None:
            return "not_ours"
        if found.session_id is not None:
            return "known_session"  # started through the API (or already handled): its worker is on the way
        if room.sid in self._started_rooms:
            return "duplicate"
        tenant = self.tenants.get(found.name.tenant)
        agent = self.agents.get(tenant.namespace, found.name.agent) if tenant else None
        if tenant is None or agent is None:
            log.warning("room names an unknown tenant or agent", room=room.name)
            return "unknown_agent"
        self._started_rooms[room.sid] = None
        if len(self._started_rooms) > 10000:
            self._started_rooms.pop(next(iter(self._started_rooms)))
        same_livekit = set(self.rooms.same_livekit(region))
        regions = [r for r in self.allocator.regions_for(tenant.spec.allowed_regions, agent, preference=None,
                                                         caller_region=region) if r in same_livekit]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROOM_START_RETRY_SECONDS
        while True:
            try:
                allocation = await self.allocator.allocate(
                    tenant=tenant.name, namespace=tenant.namespace,
                    quota_limit=tenant.spec.quotas.max_concurrent_sessions, agent=agent, regions=regions,
                    caller_identity=None, caller_name="", metadata={"source": "livekit-room"},
                    room_name=lambda _: room.name, mint_caller_token=False)
                break
            except ApiError as refused:
                if refused.status != 503 or loop.time() > deadline:
                    log.warning("no worker for a started room; closing it", room=room.name, code=refused.code)
                    await self._close(region, room.name)
                    return refused.code
                await asyncio.sleep(1.0)
        metadata = _metadata(room.metadata)
        metadata.update({room_names.METADATA_TENANT: tenant.name, room_names.METADATA_AGENT: agent.name,
                         room_names.METADATA_SESSION: allocation.session_id})
        try:
            await self.rooms.set_room_metadata(region, room.name, json.dumps(metadata))
        except Exception as error:  # noqa: BLE001 - the worker still serves the call; only later lookups suffer
            log.warning("room metadata not updated", room=room.name, error=type(error).__name__)
        log.info("room dispatched", session_id=allocation.session_id, room=room.name, pod=allocation.worker.name,
                 region=allocation.region)
        if self.on_dispatched is not None:
            try:
                await self.on_dispatched(tenant.name, agent.name, allocation)
            except Exception as error:  # noqa: BLE001 - a caller is in the room: a history blip must not drop it
                log.warning("a room's call is not in the history", session_id=allocation.session_id,
                            error_type=type(error).__name__)
        return "dispatched"

    async def participant_left(self, region: str, room: models.Room, participant: models.ParticipantInfo) -> str:
        found = self.recovery.room_session(room, participant)
        if found is None or found.session_id is None:
            return "not_ours"
        if room_names.is_agent_identity(participant.identity):
            pod = room_names.agent_identity_pod(participant.identity)
            worker = next((w for w in self.registry.tenant_workers(found.name.tenant) if w.name == pod), None)
            lost: set[Incarnation] = set()
            if worker is not None and worker.alive:
                state = await self.client.session(worker.ip or "", found.session_id)
                if state is not None and state.phase == "ended":
                    return "agent_finished"  # the worker ended the call itself
                if state is not None and state.recovery and participant.joined_at \
                        and state.started_at.timestamp() > participant.joined_at + REJOIN_SKEW_SECONDS:
                    # The worker took the call after this participant joined: a restarted container got its
                    # call back (same pod, same identity); the departed one was its dead predecessor.
                    return "agent_replaced"
                if state is not None:
                    # Its participant is gone but the worker thinks the call goes on: let it go, recover elsewhere.
                    await self.client.end_session(worker.ip or "", found.session_id)
                    lost.add(incarnation(worker))
                # Else this process never had the call (a restarted container): it may take it back.
            elif worker is not None:
                lost.add(incarnation(worker))  # stopped: its process is the one that had the call
            # Recovery may take until the agent's deadline: LiveKit gets its answer now.
            return self.recovery.ensure_agent_in_background(region, room, participant,
                                                            Loss.now(lost, {participant.sid}))
        try:
            participants = await self.rooms.participants(region, room.name)
        except Exception:  # noqa: BLE001 - the room is already gone
            participants = []
        if any(not room_names.is_agent_identity(p.identity) for p in participants):
            return "callers_remain"
        ended = await self.recovery.end_session(found)
        return "ended" if ended else "already_ended"

    async def room_finished(self, room: models.Room) -> str:
        found = self.recovery.room_session(room)
        if found is None or found.session_id is None:
            return "not_ours"
        ended = await self.recovery.end_session(found)
        return "ended" if ended else "already_ended"

    async def _close(self, region: str, room: str) -> None:
        try:
            await self.rooms.delete_room(region, room)
        except Exception:  # noqa: BLE001 - already closed
            pass


def _metadata(text: str) -> dict:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
