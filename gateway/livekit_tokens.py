"""LiveKit access tokens, minted by the gateway for the region's LiveKit: one for the caller, one for the agent.

Workers never hold a LiveKit API secret; they get the agent's token in the dispatch. The agent's token carries
the session id as a participant attribute, so any LiveKit event about that participant names its session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from livekit import api

from voxfleet.gateway.settings import LiveKitRegion

SESSION_ATTRIBUTE = "voxfleet.dev/session"


@dataclass(frozen=True)
class MintedToken:
    jwt: str
    expires_at: dt.datetime


class LiveKitTokens:
    def __init__(self, regions: dict[str, LiveKitRegion]):
        self.regions = regions

    def url(self, region: str) -> str:
        return self.regions[region].url

    def caller(self, region: str, *, room: str, identity: str, name: str, ttl_seconds: int) -> MintedToken:
        grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                                 can_publish_data=True)
        return self._mint(region, grants, identity=identity, name=name, ttl_seconds=ttl_seconds)

    def agent(self, region: str, *, room: str, identity: str, session_id: str, ttl_seconds: int) -> MintedToken:
        grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                                 can_publish_data=True, agent=True)
        return self._mint(region, grants, identity=identity, name="agent", ttl_seconds=ttl_seconds, kind="agent",
                          attributes={SESSION_ATTRIBUTE: session_id})

    def _mint(self, region: str, grants: api.VideoGrants, *, identity: str, name: str, ttl_seconds: int,
              kind: str | None = None, attributes: dict[str, str] | None = None) -> MintedToken:
        settings = self.regions[region]
        ttl = dt.timedelta(seconds=ttl_seconds)
        token = (api.AccessToken(settings.api_key, settings.api_secret.get_secret_value())
                 .with_identity(identity).with_name(name).with_grants(grants).with_ttl(ttl))
        if kind:
            token = token.with_kind(kind)
        if attributes:
            token = token.with_attributes(attributes)
        expires = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + ttl
        return MintedToken(jwt=token.to_jwt(), expires_at=expires)
