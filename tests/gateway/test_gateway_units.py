"""Cluster-free checks of the gateway's pure parts: session ids, placement order, room and identity names, API
key format and hashing, the rate limiter, merge patches, webhook replay memory, and the CLI entry points."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxfleet.api import room_names
from voxfleet.api.wire import SESSION_ID_PATTERN
from voxfleet.gateway import api_keys, placement, session_ids
from voxfleet.gateway.agent_writes import merge_patch, writable_part
from voxfleet.gateway.rate_limits import TenantRateLimiter
from voxfleet.gateway.webhook_replays import ReplayGuard

KEY = b"k" * 40
OLD_KEY = b"o" * 40


def _ref(region: str = "us-east", ip: str = "127.11.128.7") -> session_ids.SessionRef:
    return session_ids.SessionRef(region=region, worker_ip=ip, nonce=session_ids.new_nonce(),
                                  expires_at=2_000_000_000)


# --- session ids ------------------------------------------------------------------------------------------------

def test_a_session_id_round_trips_for_its_tenant_only():
    ref = _ref()
    sid = session_ids.encode(ref, tenant="acme", key=KEY)
    assert session_ids.decode(sid, tenant="acme", keys=[KEY]) == ref
    assert session_ids.decode(sid, tenant="globex", keys=[KEY]) is None  # another tenant's id is garbage
    assert session_ids.decode(sid, tenant="acme", keys=[b"x" * 40]) is None
    assert session_ids.decode(sid, tenant="acme", keys=[OLD_KEY, KEY]) == ref  # rotation: old keys verify


def test_session_ids_fit_the_wire_contract_even_at_their_longest():
    import re

    ref = _ref(region="r" * 63, ip="fd00::1234:5678:9abc:def0")
    longest = session_ids.encode(ref, tenant="t" * 63, key=KEY)
    assert len(longest) <= 200 and re.match(SESSION_ID_PATTERN, longest)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=220))
def test_garbage_never_decodes_and_never_raises(text):
    assert session_ids.decode(text, tenant="acme", keys=[KEY]) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
def test_any_flipped_byte_is_refused(position, value):
    sid = session_ids.encode(_ref(), tenant="acme", key=KEY)
    position %= len(sid)
    replacement = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."[value % 65]
    tampered = sid[:position] + replacement + sid[position + 1:]
    if tampered != sid:
        assert session_ids.decode(tampered, tenant="acme", keys=[KEY]) is None


# --- placement --------------------------------------------------------------------------------------------------

LATENCY = {"us-east": {"eu-west": 80, "ap-south": 210}, "eu-west": {"ap-south": 120}}


@pytest.mark.parametrize("preference, caller, default, expected", [
    (None, None, None, ["eu-west", "us-east", "ap-south"]),  # the agent's own order
    (None, "us-east", None, ["us-east", "eu-west", "ap-south"]),
    (None, "ap-south", None, ["ap-south", "eu-west", "us-east"]),  # one-way matrix entries count both ways
    ("ap-south", "us-east", None, ["ap-south", "us-east", "eu-west"]),  # preference first, then nearest
    (None, None, "eu-west", ["eu-west", "us-east", "ap-south"]),
    (None, "mars", None, ["eu-west", "us-east", "ap-south"]),  # unknown origin: everything equally far
])
def test_regions_are_ordered_by_preference_then_latency(preference, caller, default, expected):
    assert placement.region_order(["eu-west", "us-east", "ap-south"], usable={"eu-west", "us-east", "ap-south"},
                                  preference=preference, caller_region=caller, default_origin=default,
                                  latency_ms=LATENCY) == expected


def test_unusable_regions_are_left_out():
    assert placement.region_order(["eu-west", "us-east"], usable={"us-east"}, preference="eu-west",
                                  caller_region=None, default_origin=None, latency_ms={}) == ["us-east"]


def test_workers_most_free_first_unknown_next_full_last():
    hints = {"a": 0, "b": 3, "c": None, "d": 1}
    order = placement.worker_order(list(hints), hints.get, rng=random.Random(1))
    assert order == ["b", "d", "c", "a"]


# --- names ------------------------------------------------------------------------------------------------------

def test_room_names_split_tenant_and_agent_off_unambiguously():
    sid = session_ids.encode(_ref(), tenant="acme", key=KEY)  # contains a dot itself
    parsed = room_names.parse_room(room_names.room_for_session("acme", "support", sid))
    assert parsed == room_names.RoomName("acme", "support", sid)
    assert room_names.parse_room("acme.support.sip-123").rest == "sip-123"
    assert room_names.parse_room("Not.Valid.x") is None and room_names.parse_room("plain-room") is None
    by_metadata = room_names.parse_room("lobby", '{"voxfleet.dev/tenant": "acme", "voxfleet.dev/agent": "desk"}')
    assert by_metadata == room_names.RoomName("acme", "desk", "lobby")
    assert room_names.parse_room("lobby", "not json") is None


def test_agent_identities_name_their_pod():
    identity = room_names.agent_identity("ab12", "support-us-east-7f9c-x2")
    assert room_names.is_agent_identity(identity)
    assert room_names.agent_identity_pod(identity) == "support-us-east-7f9c-x2"
    assert room_names.agent_identity_pod("caller-1") is None


# --- keys -------------------------------------------------------------------------------------------------------

def test_keys_are_random_parse_and_match_only_their_hash():
    first, second = api_keys.generate(), api_keys.generate()
    assert first.plaintext != second.plaintext and first.key_id != second.key_id
    assert api_keys.parse(first.plaintext) == (first.key_id, first.plaintext)
    assert api_keys.matches(first.plaintext, api_keys.digest(first.plaintext))
    assert not api_keys.matches(second.plaintext, api_keys.digest(first.plaintext))
    assert api_keys.parse("vfk_short_x") is None and api_keys.parse(first.plaintext + "x") is None
    manifest = api_keys.secret_manifest(tenant="acme", key=first, namespace="sys")
    assert first.plaintext not in str(manifest)
    secret = {**manifest, "data": {"sha256": __import__("base64").b64encode(
        manifest["stringData"]["sha256"].encode()).decode()}}
    assert api_keys.from_secret(secret).tenant == "acme"


# --- rate limits, patches, replays ------------------------------------------------------------------------------

def test_the_token_bucket_allows_a_burst_then_the_rate():
    limiter = TenantRateLimiter(rate_per_second=2, burst=3)
    assert [limiter.try_acquire("a", now=0.0) for _ in range(3)] == [0, 0, 0]
    wait = limiter.try_acquire("a", now=0.0)
    assert wait == pytest.approx(0.5) and TenantRateLimiter.retry_after_header(wait) == "1"
    assert limiter.try_acquire("a", now=0.6) == 0  # refilled
    assert limiter.try_acquire("b", now=0.0) == 0  # tenants have their own buckets


def test_merge_patch_follows_rfc_7386():
    target = {"greeting": "Hi", "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1}, "tools": [1, 2]}
    patched = merge_patch(target, {"greeting": None, "scaling": {"bufferSessions": 4}, "tools": [3]})
    assert patched == {"scaling": {"sessionsPerWorker": 2, "bufferSessions": 4}, "tools": [3]}
    assert target["greeting"] == "Hi"  # the input is not modified
    assert writable_part({"greeting": "x", "worker": {"image": "y"}}) == {"greeting": "x"}


def test_the_replay_guard_remembers_ids_for_its_window():
    guard = ReplayGuard(window_seconds=10)
    assert guard.first_time("EV_1", now=0) and not guard.first_time("EV_1", now=5)
    assert guard.first_time("EV_1", now=20)  # forgotten after the window (the age check refuses it anyway)


# --- entry points -----------------------------------------------------------------------------------------------

def test_voxfleet_gateway_help_and_invalid_settings():
    help_text = subprocess.run([sys.executable, "-m", "voxfleet.cli", "gateway", "--help"], capture_output=True,
                               text=True, timeout=60)
    assert help_text.returncode == 0 and "voxfleet gateway" in help_text.stdout
    missing_key = subprocess.run([sys.executable, "-m", "voxfleet.cli", "gateway"], capture_output=True,
                                 text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "VOXFLEET_WORKER_TOKEN": "t"})
    assert missing_key.returncode == 2 and "session signing key" in missing_key.stderr


def test_voxfleet_keys_help():
    result = subprocess.run([sys.executable, "-m", "voxfleet.cli", "keys", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "create" in result.stdout and "revoke" in result.stdout


def test_the_gateway_never_loads_pipecat():
    probe = ("import sys, voxfleet.gateway.app, voxfleet.gateway.keys_cli;"
             " print(any(m.startswith('pipecat') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_the_gateway_reaches_kubernetes_only_through_voxfleet_kube():
    """One Kubernetes layer: the gateway and `voxfleet keys` load no other client library, and the gateway's own
    REST client and watch cache are gone (their work is voxfleet.kube's KubeClient and Informer now)."""
    probe = ("import sys, voxfleet.gateway.main, voxfleet.gateway.app, voxfleet.gateway.keys_cli;"
             " print(sorted(m for m in sys.modules if m.split('.')[0] in"
             " ('kubernetes', 'kubernetes_asyncio', 'lightkube', 'kr8s', 'pykube')"
             " or m in ('voxfleet.gateway.kube_client', 'voxfleet.gateway.watch_cache')));"
             " print(sorted(m for m in sys.modules if m.startswith('voxfleet.kube.')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    other_clients, kube_layer = result.stdout.strip().splitlines()
    print(f"other Kubernetes client modules loaded: {other_clients}; voxfleet.kube modules: {kube_layer}")
    assert other_clients == "[]", result.stderr
    assert "voxfleet.kube.client" in kube_layer and "voxfleet.kube.informer" in kube_layer
