"""LiveKit access tokens, minted by the gateway for the region's LiveKit: one for the caller, one for the agent.

Workers never hold a LiveKit API secret; they get the agent's token in the dispatch. The agent's token carries
the session id (and, for an eval run, that it is one) as participant attributes, so any LiveKit event about that
participant names its session and recovery can dispatch it again as it was. It is also `roomAdmin` of its one
room (LiveKit checks the grant's room): the worker writes the call's sealed checkpoint into the room's metadata
(voxfleet.worker.room_checkpoint), which LiveKit's UpdateRoomMetadata allows only to a room admin. The caller's
token has no such grant: a caller reads room metadata, never writes it.

Tokens are the claims livekit-api's AccessToken writes (camelCase video grants, sub/iss/nbf/exp, HS256), signed
here directly: two tokens are on every allocation's path, and AccessToken's dataclass conversion plus PyJWT's
key checks cost a sixth of the gateway's CPU per session. tests/gateway/test_livekit_tokens.py checks that
livekit-api's own TokenVerifier reads them exactly as it reads AccessToken's.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from voxfleet.api.room_names import EVAL_ATTRIBUTE, SESSION_ATTRIBUTE
from voxfleet.gateway.settings import LiveKitRegion

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


@dataclass(frozen=True)
class MintedToken:
    jwt: str
    expires_at: dt.datetime


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT (JWS compact serialisation) of the claims."""
    signing_input = _HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode()


class LiveKitTokens:
    def __init__(self, regions: dict[str, LiveKitRegion]):
        self.regions = regions
        self._secrets = {name: region.api_secret.get_secret_value().encode() for name, region in regions.items()}

    def url(self, region: str) -> str:
        return self.regions[region].url

    def caller(self, region: str, *, room: str, identity: str, name: str, ttl_seconds: int) -> MintedToken:
        grants = {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True, "canPublishData": True}
        return self._mint(region, {"name": name, "video": grants}, identity=identity, ttl_seconds=ttl_seconds)

    def agent(self, region: str, *, room: str, identity: str, session_id: str, ttl_seconds: int,
              eval_mode: bool = False) -> MintedToken:
        grants = {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True, "canPublishData": True,
                  "agent": True, "roomAdmin": True}
        attributes = {SESSION_ATTRIBUTE: session_id, **({EVAL_ATTRIBUTE: "true"} if eval_mode else {})}
        claims = {"name": "agent", "kind": "agent", "video": grants, "attributes": attributes}
        return self._mint(region, claims, identity=identity, ttl_seconds=ttl_seconds)

    def _mint(self, region: str, claims: dict[str, Any], *, identity: str, ttl_seconds: int) -> MintedToken:
        now = int(time.time())
        claims.update({"sub": identity, "iss": self.regions[region].api_key, "nbf": now, "exp": now + ttl_seconds})
        return MintedToken(jwt=sign(claims, self._secrets[region]),
                           expires_at=dt.datetime.fromtimestamp(now + ttl_seconds, tz=dt.timezone.utc))
