"""The call history against a real PostgreSQL, a real `voxfleet gateway` process and stand-in worker pods: a placed
call's row, Idempotency-Key on create (200 concurrent keyed creates, half retried at once: each call placed once),
history pages with cursors and filters (hostile queries are 422 naming the parameter; another tenant's calls are
404), erasure (gone from the database, and a late report does not bring it back), retention (rows past the
tenant's retentionDays deleted by the gateway's sweeper, the others kept), and the page query's plan (an index
range scan, no sort, no sequential scan). Every claim about the database is checked with SQL."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import httpx
import pytest
from kubernetes import client

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant, wait_until_served
from voxfleet.api.tenant import PLURAL as TENANT_PLURAL
from voxfleet.api.voiceagent import GROUP, VERSION
from voxfleet.gateway.history_retention import SWEEP_LOCK_KEY, RetentionSweeper
from voxfleet.store import session_records
from voxfleet.store.database import Database
from voxfleet.world import postgres as pg

pytestmark = pytest.mark.world

AGENT = "support"
SPEC = {"regions": [{"name": "us-east", "minWorkers": 0}], "scaling": {"sessionsPerWorker": 60}}
WORKERS, SLOTS = 4, 60  # 240 slots: room for the 200 concurrent calls
CONCURRENT_KEYS = 200
UTC = timezone.utc


# --- fixtures ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, livekit, module_database):
    process = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            database_url=module_database,
                            extra_env=session_gateway_env(
                                VOXFLEET_RATE_LIMIT_BURST="5000", VOXFLEET_RATE_LIMIT_PER_SECOND="5000",
                                VOXFLEET_HISTORY_SWEEP_SECONDS="1",
                                # a dispatch that times out leaves its slot taken at a slow worker: not this test's
                                VOXFLEET_DISPATCH_TIMEOUT_SECONDS="10",
                                # 300 requests at once share the pool; on 2 loaded cores a request may wait long
                                VOXFLEET_DATABASE_POOL_TIMEOUT_SECONDS="30"))
    yield process
    process.stop()


def _tenant(kube, platform_namespace, prefix: str, **spec):
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"],
                           quotas={"maxConcurrentSessions": 1000}, prefix=prefix)
    if spec:
        with kube.api_client() as api:
            client.CustomObjectsApi(api).patch_cluster_custom_object(GROUP, VERSION, TENANT_PLURAL, tenant.name,
                                                                     {"spec": spec})
    return tenant


@pytest.fixture(scope="module")
def caller(kube, platform_namespace):
    created = _tenant(kube, platform_namespace, "hist")
    yield created
    delete_tenant(kube, created)


@pytest.fixture(scope="module")
def other(kube, platform_namespace):
    created = _tenant(kube, platform_namespace, "histb")
    yield created
    delete_tenant(kube, created)


@pytest.fixture(scope="module")
def workers(kube, pods, caller, gateway):
    with httpx.Client(base_url=gateway.url, headers=caller.headers()) as http:
        wait_until_served(http)
        assert http.put(f"/v1/agents/{AGENT}", json=SPEC).status_code == 201
    names = worker_pods.create(kube, caller.namespace, [worker_pods.standin_pod(
        pods, tenant=caller.name, agent=AGENT, region="us-east", slots=SLOTS) for _ in range(WORKERS)])
    return list(worker_pods.wait_ready(kube, caller.namespace, names, pods=pods).values())


@pytest.fixture
def api(gateway, caller):
    with httpx.Client(base_url=gateway.url, headers=caller.headers(), timeout=30) as http:
        wait_until_served(http)
        yield http


@pytest.fixture
def api_b(gateway, other):
    with httpx.Client(base_url=gateway.url, headers=other.headers(), timeout=30) as http:
        wait_until_served(http)
        yield http


# --- SQL, straight to the database (never through the code under test) -----------------------------------------

def _sql(url: str, statement: str, *args, fetch: str = "fetch"):
    async def run():
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return await getattr(conn, fetch)(statement, *args)
        finally:
            await conn.close()
    return pg.run_sync(run())


def _row(url: str, tenant: str, session_id: str):
    return _sql(url, "SELECT * FROM sessions WHERE tenant = $1 AND session_id = $2", tenant, session_id,
                fetch="fetchrow")


def _report(session_id: str, started: datetime, ended: datetime, reason: str = "caller-left") -> dict:
    return {"sessionId": session_id, "agent": AGENT, "region": "us-east", "worker": "w-1", "channel": "web",
            "startedAt": started.isoformat(), "endedAt": ended.isoformat(),
            "durationMs": int((ended - started).total_seconds() * 1000), "endReason": reason,
            "turns": [{"index": 0, "atMs": 1000, "ttfaMs": 640, "interrupted": False, "outcome": "answered"},
                      {"index": 1, "atMs": 7000, "ttfaMs": 880, "interrupted": True, "outcome": "answered"}],
            "usage": {"sttMs": 9000, "llmPromptTokens": 120, "llmCompletionTokens": 40, "ttsCharacters": 300},
            "costMicros": 4200, "currency": "USD"}


def _insert_ended(url: str, tenant: str, *, count: int, newest: datetime, apart: timedelta, agents=(AGENT,),
                  reasons=("caller-left",), transcript: bool = False, prefix: str = "h") -> list[str]:
    """Ended calls as the report ingestion leaves them, newest first; their ids."""
    rows, ids = [], []
    for i in range(count):
        session_id = f"{prefix}-{uuid.uuid4().hex}"
        started = newest - i * apart
        ended = started + timedelta(seconds=42)
        reason = reasons[i % len(reasons)]
        lines = [{"role": "caller", "text": "where is my order", "atMs": 900},
                 {"role": "agent", "text": "it is being packed", "atMs": 1600}] if transcript else None
        rows.append((tenant, session_id, agents[i % len(agents)], "us-east", f"room-{session_id}", "w-1", "web",
                     "ended", started, ended, reason, 42000, json.dumps(_report(session_id, started, ended, reason)),
                     json.dumps(lines) if lines else None, 4200))
        ids.append(session_id)

    async def run():
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.executemany(
                "INSERT INTO sessions (tenant, session_id, agent, region, room, worker, channel, status, started_at,"
                " ended_at, end_reason, duration_ms, report, transcript, cost_micros)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14::jsonb, $15)", rows)
        finally:
            await conn.close()
    pg.run_sync(run())
    return ids


def _start(api: httpx.Client, **kwargs) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:  # the gateway's Pod watch needs a moment to see workers that just turned Ready
        response = api.post(f"/v1/agents/{AGENT}/sessions", **kwargs)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def _token_claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _dispatched(namespace: str, ips: list[str]) -> list[dict]:
    headers = worker_pods.worker_headers(namespace)
    return [d for ip in ips for d in httpx.get(f"http://{ip}:8080/test/dispatches", headers=headers).json()]


# --- create: the row, Location, Idempotency-Key -----------------------------------------------------------------

def test_a_placed_call_gets_its_live_row_and_a_location(api, caller, workers, module_database):
    response = _start(api, json={})
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/v1/sessions/{created['sessionId']}"
    row = _row(module_database, caller.name, created["sessionId"])
    assert row is not None and row["status"] == "live" and row["agent"] == AGENT and row["channel"] == "web"
    assert row["room"] == created["room"] and row["region"] == created["region"] and row["worker"]
    assert row["idempotency_key"] is None and row["report"] is None
    listed = api.get("/v1/sessions", params={"status": "live"}).json()["items"]
    assert created["sessionId"] in [item["sessionId"] for item in listed]
    seen = api.get(response.headers["location"]).json()
    assert seen["phase"] == "active" and seen["status"] == "live" and seen["report"] is None
    assert api.delete(f"/v1/sessions/{created['sessionId']}").status_code == 204


def test_a_retried_keyed_create_answers_the_same_call_with_a_fresh_token(api, caller, workers, module_database):
    key = f"order-{uuid.uuid4()}"
    first = _start(api, json={"metadata": {"order": 7}}, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    time.sleep(1.1)  # a token minted a second later differs in its times
    again = api.post(f"/v1/agents/{AGENT}/sessions", json={"metadata": {"order": 7}},
                     headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true", again.text
    a, b = first.json(), again.json()
    assert (b["sessionId"], b["room"], b["region"], b["participantIdentity"]) == (
        a["sessionId"], a["room"], a["region"], a["participantIdentity"])
    assert b["token"] != a["token"]  # minted again, never stored...
    claims = _token_claims(b["token"])
    assert claims["video"]["room"] == a["room"] and claims["sub"] == a["participantIdentity"]
    row = _row(module_database, caller.name, a["sessionId"])
    assert row["idempotency_key"] == key and a["token"] not in json.dumps({k: str(v) for k, v in row.items()})
    placed = [d for d in _dispatched(caller.namespace, workers) if d["sessionId"] == a["sessionId"]]
    print(f"dispatches of the retried call: {len(placed)}")
    assert len(placed) == 1

    other_body = api.post(f"/v1/agents/{AGENT}/sessions", json={"metadata": {"order": 8}},
                          headers={"Idempotency-Key": key})
    assert other_body.status_code == 422 and other_body.json()["code"] == "idempotency_key_reused"
    assert other_body.json()["details"][0]["field"] == "Idempotency-Key" and key not in other_body.text
    assert api.delete(f"/v1/sessions/{a['sessionId']}").status_code == 204


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"has space", b"tab\there", "na\u00efve".encode()])
def test_a_malformed_idempotency_key_is_422_naming_the_header(api, workers, key):
    response = api.post(f"/v1/agents/{AGENT}/sessions", json={}, headers={"Idempotency-Key": key})
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"] == "Idempotency-Key"


async def test_concurrent_keyed_creates_half_retried_at_once_place_each_call_once(gateway, caller, workers,
                                                                                 module_database):
    keys = [f"storm-{uuid.uuid4()}" for _ in range(CONCURRENT_KEYS)]
    sent = keys + keys[: CONCURRENT_KEYS // 2]  # half of them twice, all at the same time
    async with httpx.AsyncClient(base_url=gateway.url, headers=caller.headers(), timeout=120,
                                 limits=httpx.Limits(max_connections=len(sent))) as http:
        async def create(key: str) -> httpx.Response:
            # What a client does with a key: on a 503 (a worker slow to answer on a loaded machine), the same
            # request again; the retry must not place a second call either.
            for _ in range(10):
                response = await http.post(f"/v1/agents/{AGENT}/sessions", json={"metadata": {"k": key}},
                                           headers={"Idempotency-Key": key})
                if response.status_code != 503:
                    return response
                await asyncio.sleep(0.5)
            return response

        began = time.monotonic()
        responses = await asyncio.gather(*(create(k) for k in sent))
        took = time.monotonic() - began
        statuses = sorted({r.status_code for r in responses})
        by_key: dict[str, set[str]] = {}
        rooms: dict[str, set[str]] = {}
        for key, response in zip(sent, responses):
            if response.status_code == 201:
                by_key.setdefault(key, set()).add(response.json()["sessionId"])
                rooms.setdefault(key, set()).add(response.json()["room"])
        session_ids = {sid for ids in by_key.values() for sid in ids}
        dispatched = [d for d in _dispatched(caller.namespace, workers) if d["sessionId"] in session_ids]
        rows = _sql(module_database, "SELECT idempotency_key, session_id, room FROM sessions WHERE tenant = $1"
                                      " AND idempotency_key LIKE 'storm-%'", caller.name)
        replayed = sum(r.headers.get("idempotent-replayed") == "true" for r in responses)
        print(f"{len(sent)} keyed creates ({CONCURRENT_KEYS} keys, {CONCURRENT_KEYS // 2} sent twice at once) in"
              f" {took:.1f} s: statuses {statuses}, replayed answers {replayed}, distinct sessions"
              f" {len(session_ids)}, rooms {len({r for v in rooms.values() for r in v})}, worker dispatches"
              f" {len(dispatched)}, rows {len(rows)}")
        try:
            assert statuses == [201], [r.text for r in responses if r.status_code != 201][:3]
            assert all(len(ids) == 1 for ids in by_key.values()) and len(by_key) == CONCURRENT_KEYS
            assert all(len(names) == 1 for names in rooms.values())
            assert len(session_ids) == CONCURRENT_KEYS and replayed >= CONCURRENT_KEYS // 2
            assert len(dispatched) == CONCURRENT_KEYS  # each call placed at a worker once
            assert sorted(d["sessionId"] for d in dispatched) == sorted(session_ids)
            assert len(rows) == CONCURRENT_KEYS and {r["session_id"] for r in rows} == session_ids
        finally:
            await _end_all(gateway, caller, session_ids)


async def _end_all(gateway, tenant, session_ids: set[str]) -> None:
    """End the storm's calls (a fresh client: the storm's 300 idle connections are being closed by the server)."""
    async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers(), timeout=60,
                                 limits=httpx.Limits(max_connections=20)) as http:
        async def end(session_id: str) -> None:
            for _ in range(3):
                try:
                    await http.delete(f"/v1/sessions/{session_id}")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        await asyncio.gather(*(end(sid) for sid in session_ids))


# --- reading the history --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reader(kube, platform_namespace, gateway):
    """A tenant with only generated history: 130 ended calls of two agents and three end reasons, a minute
    apart."""
    tenant = _tenant(kube, platform_namespace, "histr")
    yield tenant
    delete_tenant(kube, tenant)


@pytest.fixture(scope="module")
def reader_history(reader, module_database):
    newest = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=1)
    ids = _insert_ended(module_database, reader.name, count=130, newest=newest, apart=timedelta(minutes=1),
                        agents=(AGENT, "sales"), reasons=("caller-left", "idle", "max-duration"), transcript=True)
    return newest, ids


def test_pages_follow_each_other_newest_first_until_the_last(gateway, reader, reader_history, module_database):
    newest, ids = reader_history
    seen, cursor, pages = [], None, 0
    with httpx.Client(base_url=gateway.url, headers=reader.headers(), timeout=30) as http:
        wait_until_served(http)
        while True:
            page = http.get("/v1/sessions", params={"limit": 50, **({"cursor": cursor} if cursor else {})}).json()
            pages += 1
            seen += [item["sessionId"] for item in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        first = http.get("/v1/sessions").json()["items"][0]
    expected = [r["session_id"] for r in _sql(module_database, "SELECT session_id FROM sessions WHERE tenant = $1"
                                                               " ORDER BY started_at DESC, session_id DESC",
                                              reader.name)]
    print(f"pages: {pages}, calls: {len(seen)}")
    assert seen == expected == ids and pages == 3
    assert first["status"] == "ended" and first["endReason"] == "caller-left" and first["durationMs"] == 42000
    assert first["costMicros"] == 4200 and first["turns"] == 2 and first["ttfaMedianMs"] == 760
    assert "report" not in first and "transcript" not in first  # the list stays small: details per call


def test_filters_narrow_the_history(gateway, reader, reader_history):
    newest, ids = reader_history
    with httpx.Client(base_url=gateway.url, headers=reader.headers(), timeout=30) as http:
        wait_until_served(http)

        def all_pages(**params) -> list[dict]:
            items, cursor = [], None
            while True:
                page = http.get("/v1/sessions", params={**params, "limit": 7, **({"cursor": cursor} if cursor else {})})
                assert page.status_code == 200, page.text
                items += page.json()["items"]
                cursor = page.json()["nextCursor"]
                if cursor is None:
                    return items

        sales = all_pages(agent="sales")
        assert len(sales) == 65 and {i["agent"] for i in sales} == {"sales"}
        idle = all_pages(endReason="idle")
        assert len(idle) == 43 and {i["endReason"] for i in idle} == {"idle"}
        start, end = newest - timedelta(minutes=19), newest - timedelta(minutes=9)
        window = all_pages(**{"from": start.isoformat(), "to": end.isoformat().replace("+00:00", "Z")})
        assert [i["sessionId"] for i in window] == ids[10:20]  # from inclusive, to exclusive
        assert all_pages(status="live") == [] and len(all_pages(status="ended")) == 130
        both = all_pages(agent="sales", endReason="idle")
        assert both and all(i["agent"] == "sales" and i["endReason"] == "idle" for i in both)


def test_an_ended_call_reads_with_its_report_and_transcript(gateway, reader, reader_history):
    _, ids = reader_history
    with httpx.Client(base_url=gateway.url, headers=reader.headers(), timeout=30) as http:
        wait_until_served(http)
        seen = http.get(f"/v1/sessions/{ids[0]}")
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["phase"] == "ended" and body["status"] == "ended" and body["endReason"] == "caller-left"
    assert [t["ttfaMs"] for t in body["report"]["turns"]] == [640, 880] and body["report"]["costMicros"] == 4200
    assert body["report"].get("transcript") is None
    assert [line["text"] for line in body["transcript"]] == ["where is my order", "it is being packed"]


def test_another_tenants_calls_are_invisible_and_untouchable(api_b, other, reader, reader_history, module_database):
    _, ids = reader_history
    assert api_b.get("/v1/sessions").json()["items"] == []
    for method in ("GET", "DELETE"):
        response = api_b.request(method, f"/v1/sessions/{ids[5]}")
        assert response.status_code == 404 and response.json()["code"] == "session_not_found"
    assert _row(module_database, reader.name, ids[5]) is not None  # B's DELETE erased nothing of A's


def _bad_list_cases(reader_cursor: str, other_tenant_cursor: str) -> list[tuple[str, str, str]]:
    return [
        ("limit=0", "limit", "below 1"),
        ("limit=201", "limit", "above the most"),
        ("limit=ten", "limit", "not a number"),
        ("cursor=garbage", "cursor", "not a cursor"),
        (f"cursor={reader_cursor}&agent=sales", "cursor", "a cursor of another filter"),
        (f"cursor={other_tenant_cursor}", "cursor", "another tenant's cursor"),
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "from", "from after to"),
        ("from=2026-12-01", "from", "a date without a time"),
        ("to=2026-12-01T10:00:00", "to", "no time zone"),
        ("from=yesterday", "from", "not a time"),
        ("endReason=bored", "endReason", "an unknown end reason"),
        ("status=paused", "status", "an unknown status"),
        ("agent=Not_A_Name", "agent", "not a DNS label"),
        ("sort=asc", "sort", "an unknown parameter"),
        ("limit=5&limit=6", "limit", "repeated"),
        ("cursor=" + "A" * 500, "cursor", "too long"),
    ]


def test_hostile_history_queries_are_422_naming_the_parameter(gateway, reader, reader_history, api_b, other):
    with httpx.Client(base_url=gateway.url, headers=reader.headers(), timeout=30) as http:
        wait_until_served(http)
        reader_cursor = http.get("/v1/sessions", params={"limit": 5}).json()["nextCursor"]
        for query, field, why in _bad_list_cases(reader_cursor, reader_cursor):
            asking = api_b if why == "another tenant's cursor" else http  # B presents the reader's cursor
            response = asking.get(f"/v1/sessions?{query}")
            assert response.status_code == 422, (why, response.text)
            fields = [d["field"] for d in response.json()["details"]]
            print(f"{why}: 422 naming {fields}")
            assert any(f == field or f.endswith(f".{field}") for f in fields), (why, fields)


# --- erasure --------------------------------------------------------------------------------------------------

def test_delete_erases_an_ended_calls_record_and_transcript(gateway, reader, module_database):
    [session_id] = _insert_ended(module_database, reader.name, count=1, newest=datetime.now(UTC) - timedelta(days=2),
                                 apart=timedelta(0), transcript=True, prefix="erase")
    with httpx.Client(base_url=gateway.url, headers=reader.headers(), timeout=30) as http:
        wait_until_served(http)
        assert http.get(f"/v1/sessions/{session_id}").status_code == 200
        assert http.delete(f"/v1/sessions/{session_id}").status_code == 204
        assert http.get(f"/v1/sessions/{session_id}").status_code == 404
        assert http.delete(f"/v1/sessions/{session_id}").status_code == 404
        assert session_id not in [i["sessionId"] for i in http.get("/v1/sessions", params={"limit": 200}).json()[
            "items"]]
    leftovers = _sql(module_database, "SELECT count(*) FROM sessions WHERE session_id = $1"
                                       " OR report::text LIKE '%' || $1 || '%'", session_id, fetch="fetchval")
    print(f"rows left of the erased call: {leftovers}")
    assert leftovers == 0


def test_deleting_a_live_call_ends_it_and_no_late_report_brings_it_back(api, caller, workers, module_database):
    counted = ("SELECT coalesce(sum(sessions), 0) FROM usage_daily WHERE tenant = $1")
    created = _start(api, json={}).json()
    session_id = created["sessionId"]
    assert _row(module_database, caller.name, session_id)["status"] == "live"
    before = _sql(module_database, counted, caller.name, fetch="fetchval")
    assert api.delete(f"/v1/sessions/{session_id}").status_code == 204
    after = _sql(module_database, counted, caller.name, fetch="fetchval")
    print(f"calls in the tenant's usage before/after erasing a live call: {before}/{after}")
    assert after == before + 1  # erased, but still counted: erasing is no way around usage and monthly limits
    worker = next(ip for ip in workers if any(d["sessionId"] == session_id
                                              for d in _dispatched(caller.namespace, [ip])))
    state = httpx.get(f"http://{worker}:8080/v1/sessions/{session_id}",
                      headers=worker_pods.worker_headers(caller.namespace)).json()
    assert state["phase"] == "ended" and state["endReason"] == "deleted"
    tombstones = _sql(module_database, "SELECT count(*) FROM session_erasures WHERE tenant = $1", caller.name,
                      fetch="fetchval")
    # The worker reports the ended call; the gateway's report ingestion must drop it (the tombstone).
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert _row(module_database, caller.name, session_id) is None, "the erased call came back"
        assert api.get(f"/v1/sessions/{session_id}").status_code == 404
        time.sleep(0.5)
    print(f"erased live call stayed erased for 6 s; tombstones of the tenant: {tombstones}")
    assert tombstones >= 1


# --- retention ------------------------------------------------------------------------------------------------

def test_the_sweeper_deletes_records_past_each_tenants_retention_and_keeps_the_rest(
        kube, platform_namespace, gateway, module_database):
    short = _tenant(kube, platform_namespace, "histret", history={"retentionDays": 3})
    try:
        now = datetime.now(UTC)
        expired = _insert_ended(module_database, short.name, count=5, newest=now - timedelta(days=4),
                                apart=timedelta(days=1), prefix="old")
        kept = _insert_ended(module_database, short.name, count=5, newest=now - timedelta(hours=1),
                             apart=timedelta(hours=12), prefix="new")
        ghost = f"gone-{uuid.uuid4().hex[:8]}"  # no Tenant any more: the default 30 days apply
        ghost_expired = _insert_ended(module_database, ghost, count=3, newest=now - timedelta(days=31),
                                      apart=timedelta(days=5), prefix="old")
        ghost_kept = _insert_ended(module_database, ghost, count=3, newest=now - timedelta(days=10),
                                   apart=timedelta(days=5), prefix="new")
        deadline, began = time.monotonic() + 30, time.monotonic()
        while True:
            left = {r["session_id"] for r in _sql(module_database, "SELECT session_id FROM sessions WHERE tenant"
                                                                    " = ANY($1::text[])", [short.name, ghost])}
            if not left & set(expired + ghost_expired) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"swept in {time.monotonic() - began:.1f} s: {len(set(expired + ghost_expired) - left)} of"
              f" {len(expired + ghost_expired)} expired rows gone, {len(left)} kept")
        assert not left & set(expired + ghost_expired)
        assert left == set(kept + ghost_kept)
    finally:
        delete_tenant(kube, short)
        _sql(module_database, "DELETE FROM sessions WHERE tenant = $1", ghost, fetch="execute")


class _NoTenants:
    """A tenant directory that knows no Tenant: every tenant gets the default retention."""

    def get(self, name: str) -> None:
        return None


async def test_one_sweeper_at_a_time_across_replicas_and_in_bounded_batches(database):
    """In a database of its own (no gateway sweeps it): the lock held elsewhere means no sweep; then one sweep in
    batches of 1000 deletes all 2,500 expired rows."""
    url = database
    store = await Database.connect(url)
    tenant = f"batch-{uuid.uuid4().hex[:8]}"
    holder = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        old = datetime.now(UTC) - timedelta(days=45)
        await holder.execute(
            "INSERT INTO sessions (tenant, session_id, agent, region, room, status, started_at)"
            " SELECT $1, 'old-' || i, 'a', 'us-east', 'r-' || i, 'ended', $2::timestamptz - make_interval(secs => i)"
            " FROM generate_series(1, 2500) AS i", tenant, old)
        sweeper = RetentionSweeper(store, _NoTenants(), interval_seconds=1, batch=1000)
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK_KEY)  # another replica sweeps
        blocked = await sweeper.sweep_once()
        assert not blocked.swept
        assert await holder.fetchval("SELECT count(*) FROM sessions WHERE tenant = $1", tenant) == 2500
        await holder.execute("SELECT pg_advisory_unlock($1)", SWEEP_LOCK_KEY)
        swept = await sweeper.sweep_once()
        print(f"sweep while another replica held the lock: swept={blocked.swept}; then: {swept}")
        assert swept.swept and swept.records_deleted >= 2500
        assert await holder.fetchval("SELECT count(*) FROM sessions WHERE tenant = $1", tenant) == 0
    finally:
        await holder.execute("DELETE FROM sessions WHERE tenant = $1", tenant)
        await holder.close()
        await store.close()


# --- cost: the page query's plan ------------------------------------------------------------------------------

async def test_history_pages_are_index_range_scans_even_deep_in_a_big_history(database):
    url = database
    tenant = f"big-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    store = await Database.connect(url)
    try:
        await conn.execute(
            "INSERT INTO sessions (tenant, session_id, agent, region, room, status, started_at, end_reason)"
            " SELECT CASE WHEN i % 4 = 0 THEN $1 ELSE 'neighbour-' || (i % 4) END, 's-' || md5(i::text),"
            " 'agent-' || (i % 5), 'us-east', 'r', 'ended', now() - make_interval(secs => i), 'caller-left'"
            " FROM generate_series(1, 40000) AS i", tenant)
        await conn.execute("ANALYZE sessions")
        deep = await conn.fetchrow("SELECT started_at, session_id FROM sessions WHERE tenant = $1"
                                   " ORDER BY started_at DESC, session_id DESC OFFSET 8000 LIMIT 1", tenant)
        position = session_records.PagePosition(started_at=deep["started_at"], session_id=deep["session_id"])
        cases = {
            "first page": session_records.HistoryFilter(tenant=tenant),
            "deep page": session_records.HistoryFilter(tenant=tenant),
            "agent, deep": session_records.HistoryFilter(tenant=tenant, agent="agent-3"),
        }
        async with store.connection() as db:
            for name, where in cases.items():
                after = None if name == "first page" else position
                statement = session_records.page_query(where, after=after, limit=50)
                compiled = statement.compile(dialect=db.dialect)
                sql = str(compiled)
                params = tuple(compiled.params[p] for p in compiled.positiontup)
                raw = (await db.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)).scalar()
                plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]

                def nodes(node: dict) -> list[str]:
                    return [node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "")] + [
                        n for child in node.get("Plans", []) for n in nodes(child)]
                found = nodes(plan["Plan"])
                index_rows = max(n.get("Actual Rows", 0) for n in [plan["Plan"], *plan["Plan"].get("Plans", [])])
                print(f"{name}: {found}, rows {index_rows}, {plan['Execution Time']:.2f} ms")
                assert any(n.startswith("Index Scan") for n in found), found
                assert not any(n.startswith(("Seq Scan", "Sort", "Bitmap")) for n in found), found
                assert index_rows <= 51
    finally:
        await conn.execute("DELETE FROM sessions WHERE tenant = $1 OR tenant LIKE 'neighbour-%'", tenant)
        await conn.close()
        await store.close()


# --- without a database ---------------------------------------------------------------------------------------

def test_without_a_database_the_history_is_503_and_keyed_creates_are_refused(kube, platform_namespace, gateway_logs,
                                                                              livekit, caller, workers):
    bare = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                         extra_env=session_gateway_env())
    try:
        with httpx.Client(base_url=bare.url, headers=caller.headers(), timeout=30) as http:
            wait_until_served(http)
            listed = http.get("/v1/sessions")
            assert listed.status_code == 503 and listed.json()["code"] == "database_not_configured"
            keyed = http.post(f"/v1/agents/{AGENT}/sessions", json={}, headers={"Idempotency-Key": "k-1"})
            assert keyed.status_code == 503 and keyed.json()["code"] == "database_not_configured"
            plain = _start(http, json={})
            assert plain.status_code == 201, plain.text  # sessions work as they did without a database
            assert http.get(f"/v1/sessions/{plain.json()['sessionId']}").json()["phase"] == "active"
            assert http.delete(f"/v1/sessions/{plain.json()['sessionId']}").status_code == 204
    finally:
        bare.stop()


# --- a database that stops answering --------------------------------------------------------------------------

def test_a_call_the_database_cannot_record_is_ended_and_answered_503(kube, platform_namespace, gateway_logs, livekit,
                                                                      caller, workers, tmp_path):
    """A PostgreSQL of the test's own, stopped under a running gateway: a create whose call a worker took but the
    history cannot record ends that call (no unrecorded, unbilled call goes on) and answers 503; a keyed create
    places nothing; the history answers 503. Never a 500."""
    from tests.security import secret_ledger
    from voxfleet.store import migrations_runner

    server = pg.PostgresServer(tmp_path / "pg", log_dir=tmp_path / "pg-logs").start()
    secret_ledger.record(server.info.password, "PostgreSQL admin password (a private one)")
    url = pg.create_database(server.admin_url, "calls")
    migrations_runner.upgrade(url)
    gateway = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            database_url=url, extra_env=session_gateway_env())
    try:
        with httpx.Client(base_url=gateway.url, headers=caller.headers(), timeout=30) as http:
            wait_until_served(http)
            placed = _start(http, json={})
            assert placed.status_code == 201, placed.text
            assert http.delete(f"/v1/sessions/{placed.json()['sessionId']}").status_code == 204
            before = {d["sessionId"] for d in _dispatched(caller.namespace, workers)}
            server.stop()
            refused = http.post(f"/v1/agents/{AGENT}/sessions", json={})
            new = [d["sessionId"] for d in _dispatched(caller.namespace, workers) if d["sessionId"] not in before]
            headers = worker_pods.worker_headers(caller.namespace)
            phases = [httpx.get(f"http://{ip}:8080/v1/sessions/{sid}", headers=headers).json()["phase"]
                      for sid in new for ip in workers
                      if httpx.get(f"http://{ip}:8080/v1/sessions/{sid}", headers=headers).status_code == 200]
            print(f"create with the database down: {refused.status_code} {refused.json()['code']}; calls a worker"
                  f" took meanwhile: {len(new)}, their phases at the workers: {phases}")
            assert refused.status_code == 503 and refused.json()["code"] == "database_unavailable", refused.text
            assert len(new) == 1 and phases == ["ended"]
            keyed = http.post(f"/v1/agents/{AGENT}/sessions", json={}, headers={"Idempotency-Key": "while-down"})
            assert keyed.status_code == 503 and keyed.json()["code"] == "database_unavailable", keyed.text
            after = {d["sessionId"] for d in _dispatched(caller.namespace, workers)}
            assert after == before | set(new)  # the keyed create placed nothing
            listed = http.get("/v1/sessions")
            assert listed.status_code == 503 and listed.json()["code"] == "database_unavailable"
            assert server.info.password not in refused.text + keyed.text + listed.text
    finally:
        gateway.stop()
        server.stop()
        server.remove_data()


# --- rooms started outside the API ----------------------------------------------------------------------------

async def test_a_room_started_outside_the_api_joins_the_history(kube, platform_namespace, gateway_logs, livekit,
                                                                world, tmp_path, caller, workers, module_database):
    """An inbound SIP call's room (`<tenant>.<agent>.<rest>`, created by LiveKit, no REST call): the gateway places
    its call from LiveKit's room_started webhook, and the call gets its history row (channel `room`)."""
    from livekit import api as lk_api

    from tests.gateway import webhook_livekit
    from tests.gateway.gateway_process import GatewayProcess

    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=gateway_logs / f"room-gateway-{uuid.uuid4().hex[:6]}.log", regions={},
                             database_url=module_database)
    lk = webhook_livekit.start(webhook_url=f"{gateway.url}/livekit/webhook/us-east", state_dir=tmp_path,
                               world_id=world.world_id)
    regions = livekit_regions(livekit)
    regions["us-east"] = {"url": lk.url, "apiUrl": lk.http_url, "apiKey": lk.api_key, "apiSecret": lk.api_secret}
    gateway.env.update(session_gateway_env(VOXFLEET_REGIONS=json.dumps(regions)))
    room_name = f"{caller.name}.{AGENT}.sip-{uuid.uuid4().hex[:6]}"
    try:
        gateway.start()
        with httpx.Client(base_url=gateway.url, headers=caller.headers(), timeout=30) as http:
            wait_until_served(http)
        async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
            await server.room.create_room(lk_api.CreateRoomRequest(name=room_name, empty_timeout=60))
        deadline, row = time.monotonic() + 30, None
        while row is None and time.monotonic() < deadline:
            row = _sql(module_database, "SELECT * FROM sessions WHERE tenant = $1 AND room = $2", caller.name,
                       room_name, fetch="fetchrow")
            await asyncio.sleep(0.2)
        assert row is not None, "the room's call never reached the history"
        print(f"room started outside the API: row {row['status']}, channel {row['channel']}, worker {row['worker']}")
        assert row["status"] == "live" and row["channel"] == "room" and row["agent"] == AGENT and row["worker"]
        async with httpx.AsyncClient(base_url=gateway.url, headers=caller.headers(), timeout=30) as http:
            listed = (await http.get("/v1/sessions", params={"status": "live", "limit": 200})).json()["items"]
            assert any(i["sessionId"] == row["session_id"] and i["channel"] == "room" for i in listed)
            assert (await http.delete(f"/v1/sessions/{row['session_id']}")).status_code == 204
    finally:
        gateway.stop()
        lk.stop()
