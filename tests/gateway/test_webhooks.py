"""Tenant webhooks against real servers: a real gateway (processes of `voxfleet gateway`), the real PostgreSQL of
the test world, the real apiserver (agent status written as the operator writes it) and a receiver HTTP server
the test runs on 127.0.0.1 (which the test platform's outbound policy allows, as for the tool tests).

Events are produced by the paths that produce them: agent.ready/agent.degraded by the gateway's own agent
informer, session events by `webhook_outbox.enqueue` inside a transaction, as the session write paths call it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from tests.api.invalid_resources import VALID_AGENT_SPEC
from tests.gateway.conftest import start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant, wait_until_served
from tests.gateway.webhook_receiver import Answer, Receiver, verify
from tests.security import secret_ledger
from tests.world.waiting import wait_for
from voxfleet.api.outbound import OutboundPolicy
from voxfleet.api.voiceagent import GROUP, PLURAL, VERSION
from voxfleet.gateway import webhook_secrets
from voxfleet.gateway.webhook_delivery import WebhookDispatcher
from voxfleet.gateway.webhook_settings import TenantWebhookSettings
from voxfleet.store import webhook_outbox
from voxfleet.store.database import Database
from voxfleet.store.webhook_tables import webhook_attempts, webhook_deliveries, webhook_endpoints

pytestmark = pytest.mark.world

ALLOW_LOOPBACK = json.dumps(["127.0.0.1/32"])  # the test platform's outbound policy (tests/security does the same)
FAST_RETRIES = {
    "VOXFLEET_OUTBOUND_ALLOWED_CIDRS": ALLOW_LOOPBACK,
    "VOXFLEET_TENANT_WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "VOXFLEET_TENANT_WEBHOOK_RETRY_FACTOR": "2",
    "VOXFLEET_TENANT_WEBHOOK_POLL_SECONDS": "0.2",
    "VOXFLEET_TENANT_WEBHOOK_TIMEOUT_SECONDS": "1.5",
    "VOXFLEET_TENANT_WEBHOOK_LEASE_SECONDS": "5",
    "VOXFLEET_TENANT_WEBHOOK_MAX_ATTEMPTS": "6",
    "VOXFLEET_RATE_LIMIT_PER_SECOND": "1000", "VOXFLEET_RATE_LIMIT_BURST": "1000",
}
RETRY_JITTER = 0.2  # the default: a gap is never shorter than (1 - 0.2) x its nominal length


def _new_database(postgres) -> tuple[str, str]:
    from voxfleet.store import migrations_runner
    from voxfleet.world import postgres as pg

    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg.create_database(postgres.admin_url, name)
    migrations_runner.upgrade(url)
    return name, url


@pytest.fixture(scope="module")
def store_url(postgres):
    from voxfleet.world import postgres as pg

    name, url = _new_database(postgres)
    yield url
    pg.drop_database(postgres.admin_url, name)


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, store_url):
    process = start_gateway(kube, platform_namespace, gateway_logs, database_url=store_url, extra_env=FAST_RETRIES)
    yield process
    process.stop()


@pytest.fixture
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="whk")
    yield created
    delete_tenant(kube, created)


@pytest.fixture
def api(gateway, tenant):
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        wait_until_served(http)
        yield http


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


def _register(api: httpx.Client, url: str, events: list[str], description: str = "") -> dict:
    created = api.post("/v1/webhooks", json={"url": url, "events": events, "description": description})
    assert created.status_code == 201, created.text
    body = created.json()
    secret_ledger.record(body["secret"], "tenant webhook signing secret")  # for the whole-run log scan
    assert created.headers["Location"] == f"/v1/webhooks/{body['id']}"
    return body


def _run(coroutine):
    return asyncio.run(coroutine)


async def _enqueue(url: str, tenant: str, event_type: str, data: dict, event_id: str) -> int:
    """What a session write path does: the event's deliveries inserted inside its own transaction."""
    database = await Database.connect(url)
    try:
        async with database.transaction() as conn:
            return await webhook_outbox.enqueue(conn, tenant=tenant, event_type=event_type, payload=data,
                                                event_id=event_id)
    finally:
        await database.close()


async def _query(url: str, statement, **params):
    database = await Database.connect(url)
    try:
        async with database.connection() as conn:
            return (await conn.execute(statement, params)).all()
    finally:
        await database.close()


def _deliveries(api: httpx.Client, endpoint_id: str) -> list[dict]:
    listed = api.get(f"/v1/webhooks/{endpoint_id}/deliveries")
    assert listed.status_code == 200, listed.text
    return listed.json()["items"]


def _create_agent(kube, namespace: str, name: str) -> None:
    spec = {**VALID_AGENT_SPEC, "regions": [{"name": "us-east", "minWorkers": 0, "maxWorkers": 1}]}
    with kube.api_client() as api_client:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent",
                                                "metadata": {"name": name}, "spec": spec})


def _write_ready(kube, namespace: str, name: str, status: str, at: datetime, reason: str) -> None:
    """The agent's Ready condition, written as the operator writes it (status subresource)."""
    condition = {"type": "Ready", "status": status, "reason": reason, "message": f"test: {reason}",
                 "lastTransitionTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    with kube.api_client() as api_client:
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": {"conditions": [condition]}})


def _events(receiver: Receiver, event_type: str, at: datetime) -> list:
    """The receiver's requests of this type for the transition the test wrote (an operator of another test
    module may write the agent's status too: its transitions have other times)."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [r for r in receiver.requests("/hooks") if json.loads(r.body)["type"] == event_type
            and json.loads(r.body)["data"]["transitionAt"] == stamp]


def _signature_secret_never_logged(gateway, secret: str) -> None:
    assert secret not in gateway.log(), "the webhook secret reached the gateway's log"


def test_agent_transitions_arrive_signed_verifiable_by_the_documented_recipe_and_counted(
        api, gateway, kube, tenant, receiver):
    hook = _register(api, f"{receiver.url}/hooks", ["agent.ready", "agent.degraded"], "ops pager")
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["agent.ready", "agent.degraded"]
    shown = api.get(f"/v1/webhooks/{hook['id']}").json()
    assert "secret" not in shown and shown["url"] == f"{receiver.url}/hooks"
    assert "secret" not in json.dumps(api.get("/v1/webhooks").json())

    _create_agent(kube, tenant.namespace, "concierge")
    ready_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    _write_ready(kube, tenant.namespace, "concierge", "True", ready_at, "PoolsReady")
    ready = wait_for("agent.ready at the receiver", lambda: _events(receiver, "agent.ready", ready_at), timeout=30)[0]
    degraded_at = ready_at + timedelta(seconds=5)
    _write_ready(kube, tenant.namespace, "concierge", "False", degraded_at, "WorkersNotReady")
    degraded = wait_for("agent.degraded at the receiver", lambda: _events(receiver, "agent.degraded", degraded_at),
                        timeout=30)[0]

    for request in (ready, degraded):
        event = json.loads(request.body)
        assert request.headers["voxfleet-event-id"] == event["id"]
        assert request.headers["voxfleet-event-type"] == event["type"]
        assert event["tenant"] == tenant.name and event["data"]["agent"] == "concierge"
        assert verify(hook["secret"], request.headers["voxfleet-signature"], request.body)
        wrong = "whsec_" + "A" * 43
        assert not verify(wrong, request.headers["voxfleet-signature"], request.body), "a wrong secret verified"
        assert not verify(hook["secret"], request.headers["voxfleet-signature"], request.body + b" "), \
            "a changed body verified"
    assert json.loads(ready.body)["data"]["ready"] is True
    assert json.loads(ready.body)["data"]["transitionAt"] == ready_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert json.loads(degraded.body)["data"]["reason"] == "WorkersNotReady"
    print(f"\nagent.ready arrived {ready.headers['voxfleet-signature'][:14]}..., verified with the documented"
          f" recipe; a wrong secret and a changed body fail")

    logged = {d["eventId"]: d for d in _deliveries(api, hook["id"])}
    logged = {"agent.ready": logged[json.loads(ready.body)["id"]]}
    assert logged["agent.ready"]["status"] == "delivered"
    assert [(a["attempt"], a["statusCode"], a["outcome"]) for a in logged["agent.ready"]["attempts"]] == [
        (1, 200, "delivered")]
    def delivered_count() -> float:
        return sum(sample.value for family in text_string_to_metric_families(gateway.metrics())
                   for sample in family.samples
                   if sample.name == "voxfleet_gateway_tenant_webhook_deliveries_total"
                   and sample.labels == {"tenant": tenant.name, "outcome": "delivered"})

    # The counter moves once the attempt is recorded, a moment after the receiver answered.
    counted = wait_for("both deliveries counted", lambda: delivered_count() >= 2 and delivered_count(), timeout=10)
    print(f"voxfleet_gateway_tenant_webhook_deliveries_total{{tenant, outcome=delivered}} = {counted}")
    _signature_secret_never_logged(gateway, hook["secret"])


def test_retries_after_failures_then_delivers_and_lists_every_attempt(api, gateway, tenant, receiver, store_url):
    hook = _register(api, f"{receiver.url}/calls", ["session.ended"])
    # A redirect (never followed), a 500, an answer slower than the attempt timeout (1.5 s), then a 200.
    receiver.answer(Answer(302, headers={"Location": f"{receiver.url}/elsewhere"}), Answer(500), Answer(200, delay=3),
                    Answer(200))
    event_id = f"evt_{uuid.uuid4().hex}"
    report = {"sessionId": "s-" + uuid.uuid4().hex[:8], "durationMs": 61000, "endReason": "caller-left"}
    assert _run(_enqueue(store_url, tenant.name, "session.ended", report, event_id)) == 1

    def delivered():
        items = _deliveries(api, hook["id"])
        return items if items and items[0]["status"] == "delivered" else None

    items = wait_for("the delivery to succeed", delivered, timeout=60, interval=0.3)
    assert len(items) == 1 and items[0]["eventId"] == event_id
    attempts = items[0]["attempts"]
    print("\nattempts:", [(a["attempt"], a["statusCode"], a["outcome"], a["durationMs"]) for a in attempts])
    assert [(a["statusCode"], a["outcome"]) for a in attempts] == [
        (302, "http_error"), (500, "http_error"), (None, "timeout"), (200, "delivered")]
    assert "redirects are not followed" in attempts[0]["error"]
    assert receiver.requests("/elsewhere") == [], "a redirect was followed"
    sent = receiver.requests("/calls")
    assert len(sent) == 4 and len({r.body for r in sent}) == 1, "every attempt must send the same signed body"
    assert all(verify(hook["secret"], r.headers["voxfleet-signature"], r.body) for r in sent)
    assert json.loads(sent[0].body)["data"] == report and json.loads(sent[0].body)["id"] == event_id
    # Backoff: attempt n+1 is never earlier than the jittered gap after attempt n ends.
    starts = [datetime.fromisoformat(a["startedAt"].replace("Z", "+00:00")) for a in attempts]
    ends = [start + timedelta(milliseconds=a["durationMs"]) for start, a in zip(starts, attempts)]
    gaps = [(starts[i + 1] - ends[i]).total_seconds() for i in range(len(attempts) - 1)]
    print("gaps between attempts (s):", [round(g, 2) for g in gaps], "nominal:", [0.3 * 2 ** i for i in range(3)])
    for index, gap in enumerate(gaps):
        assert gap >= 0.3 * 2 ** index * (1 - RETRY_JITTER) - 0.05


def test_a_gateway_killed_before_delivery_leaves_the_webhook_to_the_next_one_which_sends_it_once(
        kube, platform_namespace, gateway_logs, postgres, tenant, receiver):
    from voxfleet.world import postgres as pg

    name, url = _new_database(postgres)
    first = start_gateway(kube, platform_namespace, gateway_logs, database_url=url, extra_env=FAST_RETRIES)
    second = None
    try:
        with httpx.Client(base_url=first.url, headers=tenant.headers(), timeout=15) as api:
            wait_until_served(api)
            hook = _register(api, f"{receiver.url}/ended", ["session.ended"])
        # The receiver is in trouble at first: slow 503s (1 s each, inside the 1.5 s attempt timeout).
        receiver.default = Answer(503, delay=1.0)
        event_id = f"evt_{uuid.uuid4().hex}"
        assert _run(_enqueue(url, tenant.name, "session.ended", {"sessionId": "s-kill"}, event_id)) == 1
        wait_for("a failed attempt recorded", lambda: _run(_query(
            url, select(func.count()).select_from(webhook_attempts)))[0][0] >= 1, timeout=30, interval=0.1)
        # Kill it while its next attempt is in flight (the receiver holds the request for a second).
        wait_for("an attempt in flight", lambda: receiver.in_flight > 0, timeout=30, interval=0.02)
        os.killpg(first.popen.pid, signal.SIGKILL)
        first.popen.wait(timeout=10)
        lease = _run(_query(url, text("SELECT lease_owner IS NOT NULL AND lease_until > now() AS leased, attempts"
                                      " FROM webhook_deliveries WHERE event_id = :event_id"), event_id=event_id))[0]
        print(f"\nkilled the gateway with an attempt in flight; the delivery's lease still held: {lease.leased},"
              f" attempts recorded before the kill: {lease.attempts}")
        receiver.default = Answer(200)  # the receiver recovers

        second = start_gateway(kube, platform_namespace, gateway_logs, database_url=url, extra_env=FAST_RETRIES)
        accepted = wait_for("the event accepted by the receiver", lambda: [
            r for r in receiver.requests("/ended") if r.answered == 200], timeout=60, interval=0.1)
        time.sleep(2.0)  # several polls more: nothing must come again
        requests = receiver.requests("/ended")
        accepted = [r for r in requests if r.answered == 200]
        ids = [json.loads(r.body)["id"] for r in accepted]
        print(f"receiver: {len(requests)} requests for the event, {len(accepted)} answered 200, distinct event ids"
              f" accepted: {len(set(ids))}; answers: {[r.answered for r in requests]}")
        assert ids == [event_id], "the webhook must be accepted exactly once"
        assert all(json.loads(r.body)["id"] == event_id for r in requests)  # a repeat is recognisable by its id

        with httpx.Client(base_url=second.url, headers=tenant.headers(), timeout=15) as api:
            wait_until_served(api)
            items = _deliveries(api, hook["id"])
        attempts = [(a["attempt"], a["statusCode"], a["outcome"]) for a in items[0]["attempts"]]
        print("delivery log:", items[0]["status"], attempts)
        assert items[0]["status"] == "delivered" and attempts[-1][1:] == (200, "delivered")
        assert attempts[0][1:] == (503, "http_error") and len(attempts) >= 2
    finally:
        first.stop()
        if second is not None:
            second.stop()
        pg.drop_database(postgres.admin_url, name)


def test_an_endpoint_of_one_tenant_is_invisible_to_another(api, gateway, kube, platform_namespace, tenant,
                                                              receiver, store_url):
    hook = _register(api, f"{receiver.url}/a", ["session.started"])
    other = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="whk")
    try:
        with httpx.Client(base_url=gateway.url, headers=other.headers(), timeout=15) as intruder:
            wait_until_served(intruder)
            answers = {"get": intruder.get(f"/v1/webhooks/{hook['id']}"),
                       "deliveries": intruder.get(f"/v1/webhooks/{hook['id']}/deliveries"),
                       "delete": intruder.delete(f"/v1/webhooks/{hook['id']}")}
            for what, answer in answers.items():
                assert answer.status_code == 404, (what, answer.text)
                assert answer.json()["code"] == "webhook_not_found"
            assert intruder.get("/v1/webhooks").json()["items"] == []
            own = _register(intruder, f"{receiver.url}/b", ["session.started"])
        assert api.get(f"/v1/webhooks/{hook['id']}").status_code == 200  # the intruder's DELETE changed nothing
        assert [item["id"] for item in api.get("/v1/webhooks").json()["items"]] == [hook["id"]]
        assert api.get(f"/v1/webhooks/{own['id']}").status_code == 404
        # An event of the first tenant reaches its endpoint only.
        assert _run(_enqueue(store_url, tenant.name, "session.started", {"sessionId": "s-a"}, "evt_a1")) == 1
        rows = _run(_query(store_url, select(webhook_deliveries.c.endpoint_id).where(
            webhook_deliveries.c.event_id == "evt_a1")))
        assert [row.endpoint_id for row in rows] == [hook["id"]]
        # The same event again (a retried write path, a second replica) inserts nothing.
        assert _run(_enqueue(store_url, tenant.name, "session.started", {"sessionId": "s-a"}, "evt_a1")) == 0
    finally:
        delete_tenant(kube, other)


INTERNAL_URLS = [
    ("private", "https://10.1.2.3/hook", "private address"),
    ("metadata", "https://169.254.169.254/latest/meta-data", "metadata"),
    ("ipv6-loopback", "https://[::1]:8443/hook", "loopback"),
    ("hex-loopback-outside-the-allowed-address", "http://0x7f000002:9/hook", "loopback"),
    ("mapped-private", "https://[::ffff:192.168.0.7]/hook", "private"),
    ("metadata-host", "https://metadata.google.internal/x", "metadata host"),
]


@pytest.mark.parametrize("case, url, reason", INTERNAL_URLS, ids=[case[0] for case in INTERNAL_URLS])
def test_an_internal_url_is_refused_with_422_naming_the_field(api, case, url, reason):
    refused = api.post("/v1/webhooks", json={"url": url, "events": ["session.ended"]})
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == "invalid_webhook_url" and body["details"][0]["field"] == "url"
    assert reason in body["details"][0]["message"], body
    assert api.get("/v1/webhooks").json()["items"] == []


BAD_BODIES = [
    ("plain-http-to-a-public-host", {"url": "http://93.184.215.14/hook", "events": ["session.ended"]}, "url"),
    ("credentials-in-the-url", {"url": "https://user:pw@example.com/hook", "events": ["session.ended"]}, "url"),
    ("not-http", {"url": "ftp://example.com/hook", "events": ["session.ended"]}, "url"),
    ("not-a-url", {"url": "hook please", "events": ["session.ended"]}, "url"),
    ("url-too-long", {"url": "https://example.com/" + "a" * 3000, "events": ["session.ended"]}, "url"),
    ("no-events", {"url": "https://example.com/hook", "events": []}, "events"),
    ("unknown-event", {"url": "https://example.com/hook", "events": ["call.ended"]}, "events[0]"),
    ("repeated-event", {"url": "https://example.com/hook", "events": ["agent.ready", "agent.ready"]}, "events"),
    ("description-too-long", {"url": "https://example.com/hook", "events": ["agent.ready"], "description": "d" * 201},
     "description"),
    ("unknown-field", {"url": "https://example.com/hook", "events": ["agent.ready"], "secret": "mine"}, "secret"),
    ("url-missing", {"events": ["agent.ready"]}, "url"),
]


@pytest.mark.parametrize("case, body, field", BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_bad_registrations_are_refused_naming_the_field(api, case, body, field):
    refused = api.post("/v1/webhooks", json=body)
    assert refused.status_code == 422, refused.text
    fields = [detail["field"] for detail in refused.json()["details"]]
    assert field in fields, refused.json()
    if case == "unknown-field":
        assert "mine" not in refused.text  # the rejected input is never echoed


def test_bounds_ten_endpoints_per_tenant_under_concurrent_creates_and_page_limits(api, gateway, tenant, receiver):
    results: list[int] = []

    def create(index: int) -> None:
        with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=30) as http:
            answer = http.post("/v1/webhooks", json={"url": f"{receiver.url}/n{index}", "events": ["agent.ready"]})
            if answer.status_code == 201:
                secret_ledger.record(answer.json()["secret"], "tenant webhook signing secret")
            else:
                assert answer.json()["code"] == "too_many_webhooks", answer.text
            results.append(answer.status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"\n14 concurrent creates: {results.count(201)} created, {results.count(409)} refused (409)")
    assert sorted(results) == [201] * 10 + [409] * 4
    assert len(api.get("/v1/webhooks").json()["items"]) == 10
    some = api.get("/v1/webhooks").json()["items"][0]["id"]
    for query, field in (("limit=0", "limit"), ("limit=101", "limit"), ("cursor=abc", "cursor"),
                         ("cursor=" + "9" * 30, "cursor")):
        answer = api.get(f"/v1/webhooks/{some}/deliveries?{query}")
        assert answer.status_code == 422, answer.text
        assert any(d["field"].split(".")[-1] == field for d in answer.json()["details"]), answer.json()
    assert api.get("/v1/webhooks/whe_not-an-id/deliveries").status_code == 404
    assert api.delete(f"/v1/webhooks/{some}").status_code == 204
    assert api.get(f"/v1/webhooks/{some}").status_code == 404
    assert api.post("/v1/webhooks", json={"url": f"{receiver.url}/again", "events": ["agent.ready"]}).status_code \
        == 201


def test_without_a_database_the_webhook_endpoints_answer_503(kube, platform_namespace, gateway_logs, tenant):
    process = start_gateway(kube, platform_namespace, gateway_logs)
    try:
        with httpx.Client(base_url=process.url, headers=tenant.headers(), timeout=15) as api:
            wait_until_served(api)
            for answer in (api.get("/v1/webhooks"),
                           api.post("/v1/webhooks", json={"url": "https://example.com/h", "events": ["agent.ready"]})):
                assert answer.status_code == 503 and answer.json()["code"] == "database_not_configured", answer.text
    finally:
        process.stop()


def test_two_dispatchers_on_one_outbox_deliver_each_event_once(database, receiver):
    """Two gateways' dispatchers (in this process, on a database of their own) racing for 40 due deliveries:
    SKIP LOCKED hands each row to one of them; the receiver gets every event exactly once."""
    store_url = database
    settings = TenantWebhookSettings(poll_seconds=0.05, batch_size=5, concurrency=5, lease_seconds=30)
    policy = OutboundPolicy(["127.0.0.1/32"])
    key = b"k" * 40
    tenant = f"race-{uuid.uuid4().hex[:6]}"

    async def race() -> dict[str, int]:
        database = await Database.connect(store_url)
        endpoint_id = "whe_" + uuid.uuid4().hex[:24]
        async with database.transaction() as conn:
            await conn.execute(webhook_endpoints.insert().values(
                id=endpoint_id, tenant=tenant, url=f"{receiver.url}/race", events=["session.ended"],
                secret_nonce="n", secret_key_id=webhook_secrets.key_id(key)))
            for index in range(40):
                await webhook_outbox.enqueue(conn, tenant=tenant, event_type="session.ended",
                                             payload={"n": index}, event_id=f"evt_race_{index}")
        dispatchers = [WebhookDispatcher(database, settings, policy, [key], CollectorRegistry(), owner=f"gw-{i}")
                       for i in range(2)]
        handled = {d.owner: 0 for d in dispatchers}

        async def drain(dispatcher: WebhookDispatcher) -> None:
            for _ in range(200):
                claimed = await dispatcher.run_once()
                handled[dispatcher.owner] += claimed
                pending = await _pending(database, endpoint_id)
                if pending == 0:
                    return
                if claimed == 0:
                    await asyncio.sleep(0.05)

        try:
            await asyncio.gather(*(drain(d) for d in dispatchers))
        finally:
            for dispatcher in dispatchers:
                await dispatcher.stop()
            await database.close()
        return handled

    async def _pending(database, endpoint_id: str) -> int:
        async with database.connection() as conn:
            return await conn.scalar(select(func.count()).select_from(webhook_deliveries).where(
                webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == "pending"))

    handled = _run(race())
    ids = [json.loads(r.body)["id"] for r in receiver.requests("/race")]
    print(f"\nclaims per dispatcher: {handled}; receiver got {len(ids)} requests, {len(set(ids))} distinct events")
    assert sorted(ids) == sorted(f"evt_race_{i}" for i in range(40)), "each event exactly once"
    assert sum(handled.values()) == 40
