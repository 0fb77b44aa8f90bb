"""How rooms and participants are named, so a LiveKit event alone says which tenant, agent and session it is.

The gateway names rooms and agent identities and reads them back from LiveKit events; the worker tells its caller
from other agents by them; the dev tools and tests read them too: one contract, kept here.

- Rooms: ``<tenant>.<agent>.<rest>``. Tenant and agent names are DNS labels (no dots), so the first two dots
  split them off unambiguously. For a session started through the API, ``<rest>`` is its signed session id;
  a room started any other way (a SIP dispatch rule with room prefix ``<tenant>.<agent>.``, or a client with
  room metadata naming the agent) has its own ``<rest>``, and the gateway mints a session for it.
- Agent participants: ``vf-agent.<session nonce>.<pod name>``: unique per session and worker (LiveKit keeps a
  killed participant until its identity rejoins, so identities are never reused), and they say which worker
  pod serves the room. Callers may not take identities with that prefix. The agent's token carries attributes
  (the session id, whether it is an eval run), so any LiveKit event about that participant names its session.
- Room metadata (JSON): the tenant and agent of a room named otherwise, and the session the gateway gave it;
  and the call's checkpoint, sealed by the serving worker (voxfleet.worker.room_checkpoint). Whoever writes the
  metadata keeps the keys it does not own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from voxfleet.api import labels

AGENT_IDENTITY_PREFIX = "vf-agent."
CALLER_IDENTITY_PATTERN = r"^[A-Za-z0-9_:@+=-][A-Za-z0-9_.:@+=-]{0,127}$"
# Room metadata that names the agent of a room started outside the API (e.g. by a client or a SIP trunk).
METADATA_TENANT = labels.TENANT
METADATA_AGENT = labels.AGENT
METADATA_SESSION = f"{labels.PREFIX}/session"  # the session the gateway minted for such a room
METADATA_CHECKPOINT = f"{labels.PREFIX}/checkpoint"  # the serving worker's sealed checkpoint of the call
# Attributes of the agent participant (set in its token by the gateway).
SESSION_ATTRIBUTE = f"{labels.PREFIX}/session"
EVAL_ATTRIBUTE = f"{labels.PREFIX}/eval"  # "true" for an eval run's session: a recovered session stays one

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class RoomName:
    tenant: str
    agent: str
    rest: str

    def __str__(self) -> str:
        return f"{self.tenant}.{self.agent}.{self.rest}"


def room_for_session(tenant: str, agent: str, session_id: str) -> str:
    return str(RoomName(tenant, agent, session_id))


def parse_room(name: str, metadata: str = "") -> RoomName | None:
    """Tenant and agent of a room, from its name or (for rooms named otherwise) its JSON metadata."""
    parts = name.split(".", 2)
    if len(parts) == 3 and _LABEL.match(parts[0]) and _LABEL.match(parts[1]) and len(parts[0]) <= 63 \
            and len(parts[1]) <= 63 and parts[2]:
        return RoomName(parts[0], parts[1], parts[2])
    if metadata:
        try:
            data = json.loads(metadata)
        except ValueError:
            return None
        if isinstance(data, dict):
            tenant, agent = data.get(METADATA_TENANT), data.get(METADATA_AGENT)
            if isinstance(tenant, str) and isinstance(agent, str) and _LABEL.match(tenant) and _LABEL.match(agent):
                return RoomName(tenant, agent, name)
    return None


def agent_identity(nonce_hex: str, pod_name: str) -> str:
    return f"{AGENT_IDENTITY_PREFIX}{nonce_hex}.{pod_name}"


def is_agent_identity(identity: str) -> bool:
    return identity.startswith(AGENT_IDENTITY_PREFIX)


def agent_identity_pod(identity: str) -> str | None:
    """The worker pod named by an agent identity."""
    if not is_agent_identity(identity):
        return None
    parts = identity[len(AGENT_IDENTITY_PREFIX):].split(".", 1)
    return parts[1] if len(parts) == 2 and parts[1] else None
