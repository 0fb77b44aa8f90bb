"""Tenant webhooks without servers: which agent status changes are events and with which ids, the retry
schedule's shape, the derived secrets and the signature a receiver checks with the documented recipe."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from tests.gateway.webhook_receiver import verify
from voxfleet.gateway import agent_events, webhook_secrets
from voxfleet.gateway.webhook_settings import TenantWebhookSettings

CREATED = "2026-12-03T20:00:00Z"


def _agent(status: str | None, at: str, created: str = CREATED, uid: str = "u-1") -> dict:
    conditions = [] if status is None else [{"type": "Ready", "status": status, "reason": "R", "message": "m",
                                             "lastTransitionTime": at}]
    return {"metadata": {"name": "concierge", "namespace": "tenant-a", "uid": uid, "creationTimestamp": created},
            "status": {"conditions": conditions, "regions": [{"name": "us-east", "readyWorkers": 1,
                                                              "desiredWorkers": 1, "freeSlots": 3}]}}


def test_ready_and_degraded_are_transitions_into_and_out_of_ready_true():
    pending = _agent("False", "2026-12-03T20:00:01Z")
    ready = _agent("True", "2026-12-03T20:05:00Z")
    degraded = _agent("False", "2026-12-03T21:00:00Z")
    assert agent_events.changed("a", _agent(None, ""), pending) is None  # a new agent's first Ready=False
    assert agent_events.changed("a", pending, ready).event_type == "agent.ready"
    assert agent_events.changed("a", ready, ready) is None  # no transition, whatever else changed
    assert agent_events.changed("a", ready, degraded).event_type == "agent.degraded"
    assert agent_events.changed("a", degraded, _agent("Unknown", "2026-12-03T21:00:05Z")) is None
    event = agent_events.changed("a", pending, ready)
    assert event.data == {"agent": "concierge", "ready": True, "reason": "R", "message": "m",
                          "transitionAt": "2026-12-03T20:05:00Z",
                          "regions": [{"name": "us-east", "readyWorkers": 1, "desiredWorkers": 1}]}


def test_every_replica_and_a_restarted_one_name_a_transition_with_the_same_event_id():
    ready = _agent("True", "2026-12-03T20:05:00Z")
    live = agent_events.changed("a", _agent("False", "2026-12-03T20:00:01Z"), ready)
    at_start = agent_events.recent("a", ready, datetime(2026, 12, 3, 20, 6, tzinfo=timezone.utc),
                                   timedelta(minutes=5))
    assert live.event_id == at_start.event_id and at_start.seen_at_start and not live.seen_at_start
    # Another transition, another tenant or a re-created agent (new uid): other ids.
    others = {agent_events.changed("a", ready, _agent("False", "2026-12-03T21:00:00Z")).event_id,
              agent_events.changed("b", _agent("False", "2026-12-03T20:00:01Z"), ready).event_id,
              agent_events.changed("a", _agent("False", "2026-12-03T20:00:01Z"),
                                   _agent("True", "2026-12-03T20:05:00Z", uid="u-2")).event_id}
    assert live.event_id not in others and len(others) == 3


def test_at_start_only_recent_transitions_count_and_a_new_agents_not_ready_is_no_degradation():
    now = datetime(2026, 12, 3, 21, 2, tzinfo=timezone.utc)
    window = timedelta(minutes=5)
    assert agent_events.recent("a", _agent("True", "2026-12-03T20:05:00Z"), now, window) is None  # too old
    assert agent_events.recent("a", _agent("False", "2026-12-03T21:00:00Z"), now, window).event_type == \
        "agent.degraded"  # moved an hour after the agent was created: it was ready before
    assert agent_events.recent("a", _agent("False", "2026-12-03T21:00:00Z", created="2026-12-03T20:59:58Z"),
                               now, window) is None  # created two seconds before: just starting
    assert agent_events.recent("a", _agent(None, ""), now, window) is None


def test_the_default_schedule_is_ten_attempts_over_about_a_day_with_bounded_jitter():
    settings = TenantWebhookSettings()
    nominal = [settings.retry_gap(n, 0.5) for n in range(1, settings.max_attempts)]
    total_hours = sum(nominal) / 3600
    print(f"\nnominal gaps (s): {[round(g) for g in nominal]}; last attempt after {total_hours:.1f} h")
    assert settings.max_attempts == 10 and 18 <= total_hours <= 26
    assert all(later >= earlier for earlier, later in zip(nominal, nominal[1:]))
    assert settings.retry_gap(1, 0.0) == 60 * 0.8 and settings.retry_gap(1, 0.999999) < 60 * 1.2
    assert max(settings.retry_gap(n, 0.999999) for n in range(1, 20)) <= settings.retry_max_seconds * 1.2


def test_secrets_are_derived_per_endpoint_and_found_again_after_a_key_rotation():
    old, new = b"o" * 40, b"n" * 40
    secret = webhook_secrets.derive(old, tenant="a", endpoint_id="whe_1", nonce="x")
    assert secret.startswith("whsec_") and len(secret) > 40
    assert webhook_secrets.derive(old, tenant="b", endpoint_id="whe_1", nonce="x") != secret
    assert webhook_secrets.derive(old, tenant="a", endpoint_id="whe_1", nonce="y") != secret
    assert webhook_secrets.key_id(old) != webhook_secrets.key_id(new) and old.decode() not in webhook_secrets.key_id(old)
    found = webhook_secrets.secret_for([new, old], tenant="a", endpoint_id="whe_1", nonce="x",
                                       derived_by=webhook_secrets.key_id(old))
    assert found == secret  # the rotated-out key, still among the previous keys, still signs
    assert webhook_secrets.secret_for([new], tenant="a", endpoint_id="whe_1", nonce="x",
                                      derived_by=webhook_secrets.key_id(old)) is None


def test_the_documented_recipe_accepts_the_signature_and_refuses_wrong_secrets_bodies_and_old_times():
    secret = webhook_secrets.derive(b"k" * 40, tenant="a", endpoint_id="whe_1", nonce="x")
    body = b'{"id":"evt_1","type":"session.ended"}'
    now = int(time.time())
    header = webhook_secrets.signature(secret, now, body)
    assert verify(secret, header, body)
    assert not verify(secret + "x", header, body)
    assert not verify(secret, header, body.replace(b"ended", b"start"))
    assert not verify(secret, webhook_secrets.signature(secret, now - 3600, body), body)  # a replay
    assert not verify(secret, "garbage", body) and not verify(secret, "t=x,v1=00", body)
