"""End-of-call reports reach the call history through the gateway only (gateway/call_reports.py): a real gateway
with a real PostgreSQL pulls each ended call's report from stand-in worker pods (real processes at their pod IPs)
and writes it once. A worker made to forge its report (another session's id, another pod's name, negative or
oversized usage, a cost or tenant of its own, an oversized body, not JSON) gets nothing of it written: the call
is still ended, from the gateway's own facts (`worker-lost`, source `gateway`, no provider units). A worker
that dies without reporting ends its calls the same way; an erased call is never brought back by its report.

The realtime acceptance (a real call, turns and TTFA as the caller heard them, the signed `session.ended`
webhook) is tests/gateway/test_call_report_e2e.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select, text

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant
from voxfleet.api.call_report import MAX_REPORT_BYTES, CallReport, CallUsage
from voxfleet.gateway.pricing import PriceList
from voxfleet.store.database import Database
from voxfleet.store.schema import sessions

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

AGENT = "reports"
SPEC = {"greeting": "Hello!", "regions": [{"name": "us-east", "minWorkers": 0}]}
LOST_AFTER_S = 3.0
SWEEP_S = 0.5


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, livekit, module_database):
    process = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            database_url=module_database,
                            extra_env=session_gateway_env(VOXFLEET_CALL_REPORT_SWEEP_SECONDS=str(SWEEP_S),
                                                          VOXFLEET_CALL_REPORT_LOST_AFTER_SECONDS=str(LOST_AFTER_S)))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], quotas={"maxConcurrentSessions": 50})
    yield created
    delete_tenant(kube, created)


@pytest.fixture(scope="module")
def workers(kube, pods, tenant, gateway):
    """Pod name -> IP: two stand-in workers of 8 slots (one of them is crashed by a test)."""
    with httpx.Client(base_url=gateway.url, headers=tenant.headers()) as http:
        assert http.put(f"/v1/agents/{AGENT}", json=SPEC).status_code == 201
    manifests = [worker_pods.standin_pod(pods, tenant=tenant.name, agent=AGENT, region="us-east", slots=8,
                                         name=f"rep-{i}") for i in range(2)]
    names = worker_pods.create(kube, tenant.namespace, manifests)
    return worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)


async def _start(gateway, tenant) -> dict:
    async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        deadline = time.monotonic() + 20
        while (response := await http.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
               ).status_code == 503:
            assert time.monotonic() < deadline, response.text
            await asyncio.sleep(0.3)
    assert response.status_code == 201, response.text
    return response.json()


def _worker_of(tenant, session: dict, workers: dict[str, str]) -> tuple[str, str]:
    """(pod name, ip) of the stand-in that holds the session (the one whose dispatch log has it)."""
    for name, ip in workers.items():
        dispatches = httpx.get(f"http://{ip}:8080/test/dispatches",
                               headers=worker_pods.worker_headers(tenant.namespace)).json()
        if any(d["sessionId"] == session["sessionId"] for d in dispatches):
            return name, ip
    raise AssertionError("no stand-in holds the session")


def _end_at_worker(tenant, ip: str, session_id: str) -> None:
    """The call ends on its worker (as a caller hanging up would): not through the tenant API, which erases."""
    answer = httpx.delete(f"http://{ip}:8080/v1/sessions/{session_id}",
                          headers=worker_pods.worker_headers(tenant.namespace))
    assert answer.status_code == 200, answer.text


async def _row(db: Database, tenant: str, session_id: str) -> dict | None:
    async with db.connection() as conn:
        row = (await conn.execute(select(sessions).where(sessions.c.tenant == tenant,
                                                         sessions.c.session_id == session_id))).mappings().first()
    return dict(row) if row else None


async def _ended_row(db: Database, tenant: str, session_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        row = await _row(db, tenant, session_id)
        assert row is not None, "the call's record is missing"
        if row["status"] == "ended":
            return row
        assert time.monotonic() < deadline, f"the call's record is still {row['status']} after {timeout:.0f} s"
        await asyncio.sleep(0.2)


async def _usage(db: Database, tenant: str) -> dict:
    async with db.connection() as conn:
        row = (await conn.execute(text(
            "SELECT coalesce(sum(sessions), 0) AS sessions, coalesce(sum(call_ms), 0) AS call_ms,"
            " coalesce(sum(stt_ms), 0) AS stt_ms, coalesce(sum(llm_prompt_tokens), 0) AS prompt,"
            " coalesce(sum(tts_characters), 0) AS tts, coalesce(sum(cost_micros), 0) AS cost"
            " FROM usage_daily WHERE tenant = :tenant"), {"tenant": tenant})).mappings().one()
    return dict(row)


def _counter(exposition: str, tenant: str) -> dict[str, float]:
    """voxfleet_gateway_call_reports_total of one tenant, by outcome."""
    found = {}
    for line in exposition.splitlines():
        if line.startswith("voxfleet_gateway_call_reports_total{") and f'tenant="{tenant}"' in line:
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            found[outcome] = float(line.rsplit(" ", 1)[1])
    return found


@contextlib.asynccontextmanager
async def _store(url: str) -> AsyncIterator[Database]:
    """The test's own pool, opened on the test's event loop (asyncpg connections belong to one loop)."""
    database = await Database.connect(url)
    try:
        yield database
    finally:
        await database.close()


async def test_an_ended_call_gets_its_report_written_once(gateway, tenant, workers, module_database):
    async with _store(module_database) as db:
        session = await _start(gateway, tenant)
        sid = session["sessionId"]
        pod, ip = _worker_of(tenant, session, workers)
        before = await _usage(db, tenant.name)
        await asyncio.sleep(1.0)
        started = time.monotonic()
        _end_at_worker(tenant, ip, sid)
        row = await _ended_row(db, tenant.name, sid, timeout=20)
        print(f"report stored {time.monotonic() - started:.1f} s after the call ended (sweep every {SWEEP_S} s)")
        report = CallReport.model_validate({**row["report"], "transcript": row["transcript"]})
        assert report.source == "worker" and report.end_reason == "deleted" and report.worker == pod
        assert row["end_reason"] == "deleted" and row["worker"] == pod and row["transcript"] is None
        assert (report.agent, report.region, report.session_id) == (AGENT, "us-east", sid)
        # The gateway's own clock and prices: the duration from the row's start, the cost from its price list.
        assert 900 <= report.duration_ms <= 30_000 and row["duration_ms"] == report.duration_ms
        assert report.cost_micros == PriceList().cost_micros(CallUsage(), report.duration_ms) == row["cost_micros"]
        print(f"duration {report.duration_ms} ms, cost {report.cost_micros} micro-{report.currency}")
        after = await _usage(db, tenant.name)
        assert after["sessions"] - before["sessions"] == 1
        assert after["call_ms"] - before["call_ms"] == report.duration_ms
        assert after["cost"] - before["cost"] == report.cost_micros

        await asyncio.sleep(6 * SWEEP_S + 1)  # sweeps, and a tenant reading the call, settle nothing twice
        async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
            await http.get(f"/v1/sessions/{sid}")
        await asyncio.sleep(1.0)
        again = await _row(db, tenant.name, sid)
        assert again["report"] == row["report"] and again["ended_at"] == row["ended_at"]
        assert (await _usage(db, tenant.name)) == after


FORGERIES = {
    "another_session": lambda good: {**good, "sessionId": "another-session-0123456789"},
    "another_worker": lambda good: {**good, "worker": "some-other-pod"},
    "negative_usage": lambda good: {**good, "usage": {"sttMs": -60000, "llmPromptTokens": -5}},
    "usage_past_bounds": lambda good: {**good, "usage": {"llmCompletionTokens": 10**12}},
    "own_cost": lambda good: {**good, "costMicros": 0, "currency": "USD"},
    "own_tenant": lambda good: {**good, "tenant": "someone-else", "agent": "other"},
    "too_many_turns": lambda good: {**good, "turns": [{"index": i, "atMs": i} for i in range(5000)]},
}


async def test_forged_reports_are_refused_and_nothing_of_them_is_written(gateway, tenant, workers,
                                                                        module_database):
    async with _store(module_database) as db:
        before = await _usage(db, tenant.name)
        cases = {name: await _start(gateway, tenant) for name in [*FORGERIES, "oversized", "not_json"]}
        started = time.monotonic()
        for name, session in cases.items():
            sid = session["sessionId"]
            pod, ip = _worker_of(tenant, session, workers)
            good = {"sessionId": sid, "worker": pod, "complete": True, "startedAt": datetime.now(UTC).isoformat(),
                    "endedAt": datetime.now(UTC).isoformat(), "endReason": "caller-left",
                    "usage": {"sttMs": 1000, "llmPromptTokens": 10, "llmCompletionTokens": 10, "ttsCharacters": 10}}
            if name == "oversized":
                body = json.dumps({**good, "transcript": [{"role": "caller", "text": "x" * 900, "atMs": 1}] * 1300})
                assert len(body) > MAX_REPORT_BYTES
            elif name == "not_json":
                body = "{'sessionId': " + sid
            else:
                body = json.dumps(FORGERIES[name](good))
            assert httpx.post(f"http://{ip}:8080/test/report/{sid}", content=body,
                              headers=worker_pods.worker_headers(tenant.namespace)).status_code == 200
            _end_at_worker(tenant, ip, sid)
        rows = {name: await _ended_row(db, tenant.name, s["sessionId"], timeout=20)
                for name, s in cases.items()}
        print(f"{len(rows)} forged reports refused; calls ended as worker-lost within"
              f" {time.monotonic() - started:.1f} s (at once: a refused report is never asked for again)")
        for name, row in rows.items():
            report = CallReport.model_validate(row["report"])
            assert (row["end_reason"], report.source) == ("worker-lost", "gateway"), name
            assert report.usage == CallUsage() and report.turns == [], name
            assert report.cost_micros == PriceList().cost_micros(CallUsage(), report.duration_ms), name
            assert (report.agent, report.session_id) == (AGENT, cases[name]["sessionId"]), name
        after = await _usage(db, tenant.name)
        assert after["sessions"] - before["sessions"] == len(cases)
        assert (after["stt_ms"], after["prompt"], after["tts"]) == (before["stt_ms"], before["prompt"], before["tts"])
        log = gateway.log()
        refused = [json.loads(line) for line in log.splitlines() if '"worker report refused"' in line]
        problems = {entry["problem"].split(":")[0] for entry in refused}
        print(f"refusals logged: {sorted(problems)}")
        assert {"another_session", "another_worker", "too_large", "invalid"} <= problems
        counted = _counter(gateway.metrics(), tenant.name)
        print(f"voxfleet_gateway_call_reports_total of the tenant: {counted}")
        assert counted.get("refused", 0) >= len(cases) and counted.get("worker_lost", 0) >= len(cases)


async def test_a_worker_that_dies_without_reporting_ends_its_calls_as_worker_lost(gateway, tenant, workers,
                                                                                 module_database):
    async with _store(module_database) as db:
        session = await _start(gateway, tenant)
        sid = session["sessionId"]
        pod, ip = _worker_of(tenant, session, workers)
        httpx.post(f"http://{ip}:8080/test/crash", headers=worker_pods.worker_headers(tenant.namespace))
        started = time.monotonic()
        row = await _ended_row(db, tenant.name, sid, timeout=LOST_AFTER_S + 40)
        print(f"ended as {row['end_reason']} {time.monotonic() - started:.1f} s after its worker {pod} crashed")
        report = CallReport.model_validate(row["report"])
        assert row["end_reason"] == "worker-lost" and report.source == "gateway" and report.worker == pod


async def test_an_erased_call_is_not_brought_back_by_its_report(gateway, tenant, workers, module_database):
    async with _store(module_database) as db:
        session = await _start(gateway, tenant)
        sid = session["sessionId"]
        assert await _row(db, tenant.name, sid) is not None
        async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
            assert (await http.delete(f"/v1/sessions/{sid}")).status_code == 204  # ends the call and erases it
        await asyncio.sleep(8 * SWEEP_S + 2)  # its worker's report (the call ended as "deleted") is there to pull
        assert await _row(db, tenant.name, sid) is None
