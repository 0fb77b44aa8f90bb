"""The gateway's LiveKit tokens read exactly like livekit-api's own, through livekit-api's TokenVerifier."""

from __future__ import annotations

import datetime as dt

import pytest
from livekit import api

from voxfleet.api.room_names import EVAL_ATTRIBUTE, SESSION_ATTRIBUTE
from voxfleet.gateway.livekit_tokens import LiveKitTokens
from voxfleet.gateway.settings import LiveKitRegion

KEY, SECRET = "lk-key", "lk-secret-0123456789abcdef0123456789abcdef"
REGIONS = {"us-east": LiveKitRegion(url="ws://127.0.0.1:7880", api_key=KEY, api_secret=SECRET)}


def _verified(token: str) -> api.access_token.Claims:
    return api.TokenVerifier(KEY, SECRET).verify(token)


def test_caller_token_matches_access_token():
    minted = LiveKitTokens(REGIONS).caller("us-east", room="r1", identity="alice", name="Alice", ttl_seconds=600)
    reference = (api.AccessToken(KEY, SECRET).with_identity("alice").with_name("Alice")
                 .with_grants(api.VideoGrants(room_join=True, room="r1")).with_ttl(dt.timedelta(seconds=600)).to_jwt())
    ours, theirs = _verified(minted.jwt), _verified(reference)
    assert ours == theirs
    assert ours.video.room_join and ours.video.room == "r1" and ours.video.can_publish and not ours.video.agent
    assert abs((minted.expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds() - 600) < 5


def test_agent_token_carries_kind_grant_and_session_attribute():
    minted = LiveKitTokens(REGIONS).agent("us-east", room="r2", identity="vf-agent.x.pod", session_id="s" * 20,
                                          ttl_seconds=120)
    reference = (api.AccessToken(KEY, SECRET).with_identity("vf-agent.x.pod").with_name("agent").with_kind("agent")
                 .with_grants(api.VideoGrants(room_join=True, room="r2", agent=True, room_admin=True))
                 .with_attributes({SESSION_ATTRIBUTE: "s" * 20}).with_ttl(dt.timedelta(seconds=120)).to_jwt())
    assert _verified(minted.jwt) == _verified(reference)
    assert _verified(minted.jwt).kind == "agent"
    assert EVAL_ATTRIBUTE not in _verified(minted.jwt).attributes
    # Admin of its own room only (it writes the call's checkpoint into the room's metadata); the caller is not.
    assert _verified(minted.jwt).video.room_admin and _verified(minted.jwt).video.room == "r2"
    caller = LiveKitTokens(REGIONS).caller("us-east", room="r2", identity="c", name="c", ttl_seconds=60)
    assert not _verified(caller.jwt).video.room_admin


def test_an_eval_sessions_agent_token_says_so():
    """Recovery reads this attribute off the lost agent participant, so the new worker keeps the eval mode."""
    minted = LiveKitTokens(REGIONS).agent("us-east", room="r3", identity="vf-agent.y.pod", session_id="e" * 20,
                                          ttl_seconds=120, eval_mode=True)
    assert _verified(minted.jwt).attributes == {SESSION_ATTRIBUTE: "e" * 20, EVAL_ATTRIBUTE: "true"}


def test_a_token_signed_with_another_secret_does_not_verify():
    other = {"us-east": LiveKitRegion(url="ws://x", api_key=KEY, api_secret="another-secret-0123456789abcdef012")}
    minted = LiveKitTokens(other).caller("us-east", room="r", identity="i", name="n", ttl_seconds=60)
    with pytest.raises(Exception):
        _verified(minted.jwt)
