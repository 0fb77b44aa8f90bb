"""Recovery: a call whose worker died gets another warm worker of the same agent, which says a recovery line,
and the search goes on until the agent's ``spec.recovery.deadlineMs`` (counted from the loss being seen).

Two signals, whichever comes first: the worker Pod is lost (deleted, or its container stopped or restarted:
the Pod watch), or the agent participant leaves the room while the caller stays (a LiveKit webhook). LiveKit
is the record of which calls a worker had: rooms of the agent on every LiveKit (a call may have been recovered
onto a worker of another region before), whose agent participant names the dead pod. The room is *ensured* an
agent, then the dead participant is removed (a killed participant would otherwise linger until LiveKit times
it out):

- no caller left: nothing to save, the session is ended wherever a worker still holds it (outcome no_caller);
- a live agent of another worker is there (already recovered): nothing to do;
- otherwise the session (same id, same room) is dispatched with ``recovery: true``, to the first that takes it
  of: the Ready workers of the room's region (the restarted pod among them once it is Ready again), then those
  of the agent's other regions by latency from the room's (within the tenant's allowed regions), which join the
  same room on the room's LiveKit. None free: wait for the next worker Pod change (a worker turning Ready) or a
  bounded backoff, and look again, until the deadline; then give up: the session is ended and the room deleted,
  so the caller is not left in a silent room.

What is lost is a container *incarnation* (Pod uid and restart counts), not the Pod: a restarted container keeps
the uid but is a new process, without the old one's calls, and may take them back. Its participants are told
apart by their LiveKit sid (the restarted worker's agent joins under the same identity).

Each lost call ends in one outcome, counted in ``voxfleet_gateway_session_recoveries_total`` and logged once
("session recovery": outcome, attempts, ms): same_region, restarted_worker, other_region, gave_up, no_caller,
no_agent; ``voxfleet_gateway_session_recovery_seconds`` times loss seen -> new agent dispatched.

Both signals of one loss reach every replica that sees them. Within a replica one recovery per session runs at a
time (a second signal while it runs leaves it to the first), and a recovery first asks the workers whether one
already holds the session (then its agent is on its way). Across replicas (every replica sees a lost Pod;
LiveKit delivers the webhook to one) they agree anyway: within a region candidates are ordered by rendezvous
hashing of the session id over the workers (not by load hints, which differ between replicas), regions by the
shared latency matrix, and a worker answers a repeated dispatch of one session id with the same session, so
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
from voxfleet.gateway.agent_directory import AgentDirectory, AgentInfo
from voxfleet.gateway.allocation import Allocator
from voxfleet.gateway.livekit_rooms import LiveKitRooms
from voxfleet.gateway.metrics import GatewayMetrics
from voxfleet.gateway.session_locator import SessionLocator
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.gateway.worker_changes import WorkerChanges
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.gateway.worker_registry import Worker, WorkerRegistry

log = structlog.get_logger(__name__)

RETRY_BACKOFF_START, RETRY_BACKOFF_MAX = 0.25, 2.0  # between looks when no Pod change wakes the recovery
RETRY_MIN_INTERVAL = 0.1  # a storm of Pod changes (a busy cluster) wakes it no more often than this
ATTEMPTS_PER_LOOK = 16  # workers asked per look (a full one answers 409 at once)
GAVE_UP_MEMORY_SECONDS = 300  # a session given up on stays settled this long (its room's last events follow)

Incarnation = tuple[str, tuple[int, ...]]  # (Pod uid, container restart counts)


def incarnation(worker: Worker) -> Incarnation:
    """Which process of the Pod this is: a restarted container keeps the Pod's uid, not its calls."""
    return (worker.incarnation[0], tuple(worker.incarnation[1]))


@dataclass(frozen=True)
class Loss:
    """What a call lost: the worker processes that held it, their participants left in the room, and when the
    loss was seen (event-loop time; the deadline counts from it)."""

    incarnations: frozenset[Incarnation]
    participant_sids: frozenset[str]
    seen_at: float

    @classmethod
    def now(cls, incarnations: set[Incarnation] | None = None, participant_sids: set[str] | None = None) -> "Loss":
        return cls(frozenset(incarnations or ()), frozenset(participant_sids or ()),
                   asyncio.get_running_loop().time())

    def lost_pod(self, worker: Worker) -> bool:
        return any(uid == worker.uid for uid, _ in self.incarnations)


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
        self.changes = WorkerChanges(registry)
        self._tasks: set[asyncio.Task] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._gave_up: dict[str, float] = {}  # session id -> when this replica gave up on it (event-loop time)

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
        self._background(self.recover_worker(worker, Loss.now({incarnation(worker)})), f"recover {worker.name}")

    def _background(self, work, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _livekits(self, preferred: str) -> list[str]:
        """One region per LiveKit deployment (``preferred`` for its own), to list each LiveKit's rooms once."""
        chosen: dict[str, str] = {}
        for region, settings in self.rooms.regions.items():
            if settings.url not in chosen or region == preferred:
                chosen[settings.url] = region
        return list(chosen.values())

    async def recover_worker(self, worker: Worker, loss: Loss | None = None) -> int:
        """Find the rooms the worker's agent participant was in, on every LiveKit (a call recovered onto a worker
        of another region stays on its room's LiveKit), and ensure each has an agent again."""
        loss = loss or Loss.now({incarnation(worker)})
        started = time.perf_counter()

        async def rooms_on(region: str) -> list[tuple[str, models.Room]]:
            try:
                return [(region, room) for room in await self.rooms.list_rooms(region)]
            except Exception as error:  # noqa: BLE001 - LiveKit down: the webhook path may still recover
                log.warning("cannot list rooms to recover a lost worker", pod=worker.name, livekit_region=region,
                            error=type(error).__name__)
                return []

        listed = [pair for pairs in await asyncio.gather(*(rooms_on(r) for r in self._livekits(worker.region)))
                  for pair in pairs]
        mine = [(region, r) for region, r in listed if (n := room_names.parse_room(r.name, r.metadata)) is not None
                and n.tenant == worker.tenant and n.agent == worker.agent]
        recovered = await asyncio.gather(*(self._recover_room(worker, region, room, loss) for region, room in mine))
        count = sum(recovered)
        log.info("lost worker's calls handled", pod=worker.name, rooms_checked=len(mine), recovered=count,
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return count

    async def _recover_room(self, worker: Worker, region: str, room: models.Room, loss: Loss) -> bool:
        try:
            participants = await self.rooms.participants(region, room.name)
        except Exception:  # noqa: BLE001 - the room just closed
            return False
        dead = [p for p in participants if room_names.agent_identity_pod(p.identity) == worker.name]
        if not dead:
            return False
        loss = Loss(loss.incarnations, loss.participant_sids | {p.sid for p in dead}, loss.seen_at)
        recovered = await self.ensure_agent(region, room, dead[0], participants, loss=loss)
        # Only then: a killed participant lingers until LiveKit times it out, so remove it (the caller hears the
        # new agent first; this costs the call nothing). Not when the pod runs again: its restarted worker's
        # agent may be joining under the same identity (removal is by identity), and replaces the dead one.
        if any(w.name == worker.name and w.alive and incarnation(w) not in loss.incarnations
               for w in self.registry.tenant_workers(worker.tenant)):
            return recovered
        try:
            still_there = {p.identity for p in await self.rooms.participants(region, room.name)
                           if p.sid in loss.participant_sids}
        except Exception:  # noqa: BLE001 - the room closed meanwhile
            still_there = set()
        for identity in still_there:
            try:
                await self.rooms.remove_participant(region, room.name, identity)
            except Exception:  # noqa: BLE001 - already gone
                pass
        return recovered

    # --- the decision ---------------------------------------------------------------------------------------

    def recovering(self, session_id: str) -> bool:
        """Whether this replica is recovering the session right now."""
        lock = self._locks.get(session_id)
        return lock is not None and lock.locked()

    async def ensure_agent(self, region: str, room: models.Room, departed: models.ParticipantInfo | None,
                           participants: list[models.ParticipantInfo] | None = None,
                           loss: Loss | None = None) -> bool:
        """Make sure a room whose agent left still has one while a caller is in it, trying until the agent's
        recovery deadline. True if re-dispatched. ``region``: one whose LiveKit holds the room."""
        found = self.room_session(room, departed)
        if found is None or found.session_id is None or found.ref is None:
            return False
        loss = loss or Loss.now()
        # Both signals of one loss (Pod watch and webhook) land here: one recovery per session at a time; a signal
        # arriving while one runs leaves the call to it (it will see the departed agent too).
        if self.recovering(found.session_id):
            log.debug("recovery already under way", session_id=found.session_id)
            return False
        if self._given_up(found.session_id):
            return False  # its room was closed on purpose: the events of its closing are no new loss
        async with self._locks.setdefault(found.session_id, asyncio.Lock()):
            try:
                return await self._ensure_agent(region, room, found, participants, loss)
            finally:
                lock = self._locks.get(found.session_id)
                if lock is not None and not lock._waiters:  # noqa: SLF001 - drop idle locks
                    self._locks.pop(found.session_id, None)

    def ensure_agent_in_background(self, region: str, room: models.Room, departed: models.ParticipantInfo,
                                   loss: Loss) -> str:
        """The webhook's way in: it answers LiveKit at once, the recovery may take until the deadline."""
        found = self.room_session(room, departed)
        if found is None or found.session_id is None:
            return "not_ours"
        if self.recovering(found.session_id):
            return "recovery_in_progress"
        if self._given_up(found.session_id):
            return "given_up"
        self._background(self.ensure_agent(region, room, departed, loss=loss), f"recover {room.name}")
        return "recovering"

    async def _ensure_agent(self, region: str, room: models.Room, found: RoomSession,
                            participants: list[models.ParticipantInfo] | None, loss: Loss) -> bool:
        assert found.session_id is not None and found.ref is not None
        loop = asyncio.get_running_loop()
        home = self._home_region(region, found)
        attempts, looks, backoff, last_look = 0, 0, RETRY_BACKOFF_START, 0.0
        while True:
            if participants is None:
                try:
                    participants = await self.rooms.participants(region, room.name)
                except Exception:  # noqa: BLE001 - the room is gone (deleted, emptied, given up on): so is the call
                    log.debug("room closed before its recovery", session_id=found.session_id, looks=looks)
                    return False
            looks += 1
            callers = [p for p in participants if not room_names.is_agent_identity(p.identity)]
            if not callers:
                await self.end_session(found)
                self._record(found, found.name.agent, home, "no_caller", loss, attempts, looks)
                return False
            if any(self._agent_alive(p, found.name.tenant, loss) for p in participants):
                return attempts > 0  # already recovered (by the other signal, another replica, or us)
            holders = [x for x in await self.locator.locate(found.name.tenant, found.session_id, found.ref)
                       if x.state.phase != "ended" and incarnation(x.worker) not in loss.incarnations]
            if holders:
                return attempts > 0  # already re-dispatched: its agent is joining
            last_look = loop.time()
            agent = self.agents.get(self._namespace(found.name.tenant), found.name.agent)
            if agent is None:
                self._record(found, found.name.agent, home, "no_agent", loss, attempts, looks)
                return False
            candidates = self._candidates(found, agent, home, loss)
            if candidates:
                attempts += 1
                claimed = await self.allocator.redispatch(
                    tenant=found.name.tenant, agent=agent, session_id=found.session_id, room=room.name,
                    nonce_hex=found.ref.nonce_hex, livekit_region=region, candidates=candidates,
                    caller_identity=callers[0].identity, eval_mode=found.eval_mode, max_attempts=ATTEMPTS_PER_LOOK)
                if claimed is not None:
                    self._record(found, agent.name, home, self._outcome(claimed.worker, home, loss), loss, attempts,
                                 looks, worker=claimed.worker)
                    return True
            remaining = loss.seen_at + agent.spec.recovery.deadline_ms / 1000 - loop.time()
            if remaining <= 0:
                await self._give_up(region, room, found)
                self._record(found, agent.name, home, "gave_up", loss, attempts, looks)
                return False
            woken = await self.changes.wait(min(backoff, remaining))
            backoff = RETRY_BACKOFF_START if woken else min(backoff * 2, RETRY_BACKOFF_MAX)
            pause = last_look + RETRY_MIN_INTERVAL - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            participants = None

    def _home_region(self, region: str, found: RoomSession) -> str:
        """The room's region: where its session was placed (its id says), when the listing LiveKit serves it."""
        assert found.ref is not None
        same = self.rooms.same_livekit(region)
        return found.ref.region if found.ref.region in same else region

    def _candidates(self, found: RoomSession, agent: AgentInfo, home: str, loss: Loss) -> list[Worker]:
        """Ready workers of the room's region, then of the agent's other regions by latency from it (the
        tenant's allowed ones), each region in rendezvous order; none of the lost processes."""
        tenant = self.tenants.get(found.name.tenant)
        allowed = tenant.spec.allowed_regions if tenant is not None else []
        regions = self.allocator.regions_for(allowed, agent, preference=home, caller_region=home)
        ordered: list[Worker] = []
        for region in regions:
            workers = [w for w in self.registry.ready_workers(found.name.tenant, agent.name, region)
                       if incarnation(w) not in loss.incarnations]
            workers.sort(key=lambda w: _rendezvous(found.session_id or "", w.uid))
            ordered += workers
        return ordered

    @staticmethod
    def _outcome(worker: Worker, home: str, loss: Loss) -> str:
        if loss.lost_pod(worker):
            return "restarted_worker"
        return "same_region" if worker.region == home else "other_region"

    def _record(self, found: RoomSession, agent: str, home: str, outcome: str, loss: Loss, attempts: int,
                looks: int, worker: Worker | None = None) -> None:
        """attempts: rounds of dispatches (a look that found candidates); looks: times the room was checked."""
        seconds = asyncio.get_running_loop().time() - loss.seen_at
        labels = (found.name.tenant, agent, home, outcome)
        self.metrics.recoveries.labels(*labels).inc()
        self.metrics.recovery_seconds.labels(*labels).observe(seconds)
        log.info("session recovery", outcome=outcome, attempts=attempts, looks=looks, ms=round(seconds * 1000),
                 session_id=found.session_id, tenant=found.name.tenant, agent=agent, region=home,
                 pod=worker.name if worker else None, worker_region=worker.region if worker else None,
                 eval_mode=found.eval_mode)

    def _given_up(self, session_id: str) -> bool:
        now = asyncio.get_running_loop().time()
        for expired in [s for s, at in self._gave_up.items() if now - at > GAVE_UP_MEMORY_SECONDS]:
            del self._gave_up[expired]
        return session_id in self._gave_up

    async def _give_up(self, region: str, room: models.Room, found: RoomSession) -> None:
        """No worker within the deadline: end the session and close the room, so the caller is told (their
        client sees the room end) instead of sitting in silence."""
        assert found.session_id is not None
        self._gave_up[found.session_id] = asyncio.get_running_loop().time()
        await self.end_session(found)
        try:
            await self.rooms.delete_room(region, room.name)
        except Exception as error:  # noqa: BLE001 - closed already
            log.debug("room not deleted", room=room.name, error=type(error).__name__)

    def _agent_alive(self, participant: models.ParticipantInfo, tenant: str, loss: Loss) -> bool:
        if participant.sid in loss.participant_sids:
            return False
        pod = room_names.agent_identity_pod(participant.identity)
        if pod is None:
            return False
        worker = next((w for w in self.registry.tenant_workers(tenant) if w.name == pod), None)
        return worker is not None and worker.alive and incarnation(worker) not in loss.incarnations

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
