"""`agent.ready` and `agent.degraded` webhooks: transitions of a VoiceAgent's Ready condition, as the gateway's
agent informer sees the operator write them.

agent.ready: Ready became True. agent.degraded: Ready left True (False or Unknown). Every gateway replica sees
every transition and enqueues it; the event id is a digest of (tenant, agent, its uid, the condition's status and
lastTransitionTime), the same at every replica, and the outbox's unique (endpoint, event id) pair turns all but
the first enqueue into nothing, so a transition reaches an endpoint once.

A replica starting up has not seen what happened while it was down: it also sends the transitions of the last
agent_event_max_age_seconds it finds in its first list (repeats of what another replica sent are dropped the same
way; endpoints registered after the transition do not get it). At start a Ready=False condition counts as
degraded only when it moved later than a minute after the agent was created: the operator's first Ready=False of
a new agent is not a degradation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import structlog

from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.kube.informer import MODIFIED, Informer, InformerEvent
from voxfleet.store import webhook_outbox

log = structlog.get_logger(__name__)

MAX_MESSAGE = 500
MAX_QUEUED = 10_000
NEW_AGENT_GRACE = timedelta(seconds=60)


@dataclass(frozen=True)
class AgentTransition:
    tenant: str
    event_type: str
    event_id: str
    data: dict[str, Any]
    occurred_at: datetime
    seen_at_start: bool = False  # from a start-up list: endpoints registered after it do not get it


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


def ready_condition(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition
    return None


def transition(tenant: str, obj: dict[str, Any], event_type: str) -> AgentTransition | None:
    condition = ready_condition(obj) or {}
    occurred_at = _parse_time(condition.get("lastTransitionTime"))
    if occurred_at is None:
        return None
    meta = obj.get("metadata") or {}
    status = str(condition.get("status"))
    key = "|".join([event_type, tenant, str(meta.get("name")), str(meta.get("uid")), status,
                    str(condition.get("lastTransitionTime"))])
    event_id = "evt_" + hashlib.sha256(key.encode()).hexdigest()[:32]
    regions = [{"name": r.get("name"), "readyWorkers": r.get("readyWorkers"), "desiredWorkers": r.get("desiredWorkers")}
               for r in ((obj.get("status") or {}).get("regions") or []) if isinstance(r, dict)][:20]
    data = {"agent": meta.get("name"), "ready": status == "True", "reason": str(condition.get("reason") or ""),
            "message": str(condition.get("message") or "")[:MAX_MESSAGE],
            "transitionAt": occurred_at.isoformat().replace("+00:00", "Z"), "regions": regions}
    return AgentTransition(tenant, event_type, event_id, data, occurred_at)


def changed(tenant: str, old: dict[str, Any] | None, new: dict[str, Any]) -> AgentTransition | None:
    """The transition between two versions of an agent, if its Ready condition moved into or out of True."""
    before = str((ready_condition(old) or {}).get("status"))
    after = str((ready_condition(new) or {}).get("status"))
    if after == "True" and before != "True":
        return transition(tenant, new, "agent.ready")
    if before == "True" and after != "True" and ready_condition(new) is not None:
        return transition(tenant, new, "agent.degraded")
    return None


def recent(tenant: str, obj: dict[str, Any], now: datetime, max_age: timedelta) -> AgentTransition | None:
    """At start-up: the agent's Ready transition, when it is recent enough to be news."""
    condition = ready_condition(obj)
    when = _parse_time((condition or {}).get("lastTransitionTime"))
    if condition is None or when is None or now - when > max_age:
        return None
    found = None
    if condition.get("status") == "True":
        found = transition(tenant, obj, "agent.ready")
    else:
        created = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
        if created is not None and when - created > NEW_AGENT_GRACE:
            found = transition(tenant, obj, "agent.degraded")
    return None if found is None else dataclasses.replace(found, seen_at_start=True)


class AgentEvents:
    """Watches the agent informer and enqueues its Ready transitions (a task writes them; the informer's handler
    must stay quick)."""

    def __init__(self, database: Any, agents: Informer, tenants: TenantDirectory, *, max_age_seconds: float) -> None:
        self.database = database
        self.agents = agents
        self.tenants = tenants
        self.max_age = timedelta(seconds=max_age_seconds)
        self._queue: asyncio.Queue[AgentTransition] = asyncio.Queue(MAX_QUEUED)
        self._task: asyncio.Task | None = None
        self._running = False

    def start(self) -> None:
        """Queue the recent transitions of the agents known now, then every later one (no gap: both happen in
        this one synchronous step of the event loop)."""
        self._running = True
        now = datetime.now(timezone.utc)
        for obj in self.agents.values():
            tenant = self.tenants.owner_of((obj.get("metadata") or {}).get("namespace") or "")
            if tenant is not None:
                self._put(recent(tenant, obj, now, self.max_age))
        self.agents.add_handler(self._on_change)
        self._task = asyncio.create_task(self._write_forever(), name="agent webhook events")

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def _on_change(self, event: InformerEvent[dict[str, Any]]) -> None:
        if not self._running or event.type != MODIFIED or event.new is None:
            return
        tenant = self.tenants.owner_of(event.key[0] or "")
        if tenant is not None:
            self._put(changed(tenant, event.old, event.new))

    def _put(self, item: AgentTransition | None) -> None:
        if item is None:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("agent webhook event dropped: queue full", tenant=item.tenant, event_type=item.event_type)

    async def _write_forever(self) -> None:
        while True:
            item = await self._queue.get()
            for wait in (0.5, 1, 2, 4, 8, None):  # a short database outage must not lose the transition
                try:
                    async with self.database.transaction() as conn:
                        count = await webhook_outbox.enqueue(conn, tenant=item.tenant, event_type=item.event_type,
                                                             payload=item.data, event_id=item.event_id,
                                                             occurred_at=item.occurred_at if item.seen_at_start
                                                             else None)
                    log.info("agent webhook event", tenant=item.tenant, agent=item.data["agent"],
                             event_type=item.event_type, event_id=item.event_id, deliveries=count)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001
                    if wait is None:
                        log.warning("agent webhook event not enqueued", tenant=item.tenant,
                                    event_type=item.event_type, error_type=type(error).__name__)
                        break
                    await asyncio.sleep(wait)
