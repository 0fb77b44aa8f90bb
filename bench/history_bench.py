"""Call-history benchmark: `GET /v1/sessions` latency with 1,000,000 stored sessions across 100 tenants, through a
real `voxfleet gateway`, beside a bare SQL query of the same page (asyncpg, no gateway) in the same run.

The rows are generated inside PostgreSQL (one INSERT ... SELECT over generate_series: no client round trips)
into a PostgreSQL of the bench's own (Debian's server, world/postgres.py) with every migration applied: 100
tenants x 10,000 ended calls over ~28 days, 5 agents each, a three-turn report per call. One tenant is a real
Tenant of the world (with an API key the gateway serves); the other 99 exist only in the table, as neighbours.

Measured for that tenant, each page of 50 calls (the API's default), one request at a time:
  first         GET /v1/sessions                         (newest 50)
  deep          GET /v1/sessions?cursor=<after 5,000>    (a page deep in the history: keyset, no OFFSET)
  agent_first   GET /v1/sessions?agent=agent-3
  agent_deep    GET /v1/sessions?agent=agent-3&cursor=<after 1,000 of that agent's>
p50/p99 through the gateway (HTTP client to JSON parsed) and of the bare query (the same SELECT, same LIMIT 51,
asyncpg, rows fetched), their ratio, and each query's plan (EXPLAIN ANALYZE: the index it scans, rows read). The
gateway's floor in the same run: `GET /v1/agents` of the same tenant, answered from the gateway's watched copies
(authentication, rate limit, middleware, JSON; no database), timed the same way.

    .venv/bin/python bench/history_bench.py [--samples 300] [--tenants 100] [--per-tenant 10000]

Prints the figures and one JSON line (prefix `BENCH_JSON `). Attaches to $VOXFLEET_WORLD_DIR's world for the
apiserver the gateway watches (else starts one); the PostgreSQL is always its own, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from tests.crds import install_crds  # noqa: E402
from tests.gateway.conftest import livekit_regions  # noqa: E402
from tests.gateway.gateway_process import SIGNING_KEY, GatewayProcess  # noqa: E402
from tests.gateway.tenant_setup import create_tenant, delete_tenant  # noqa: E402
from voxfleet.gateway import history_cursors  # noqa: E402
from voxfleet.store import migrations_runner  # noqa: E402
from voxfleet.store.session_records import HistoryFilter, PagePosition  # noqa: E402
from voxfleet.world.access import Cluster  # noqa: E402
from voxfleet.world.postgres import PostgresServer, create_database  # noqa: E402
from voxfleet.world.world import attach_or_start  # noqa: E402

PAGE = 50
AGENTS = 5
SECONDS_APART = 240  # 10,000 calls x 4 minutes: ~28 days, inside the default 30-day retention

GENERATE = """
INSERT INTO sessions (tenant, session_id, agent, region, room, worker, channel, status, started_at, ended_at,
                      end_reason, duration_ms, report, cost_micros)
SELECT tenant, session_id, agent, region, 'room-' || session_id, 'worker-' || (i % 7), 'web', 'ended',
       started_at, started_at + make_interval(secs => 30 + i % 300), end_reason, (30 + i % 300) * 1000,
       jsonb_build_object('sessionId', session_id, 'agent', agent, 'region', region, 'endReason', end_reason,
                          'turns', jsonb_build_array(
                              jsonb_build_object('index', 0, 'atMs', 2000, 'ttfaMs', 500 + i % 500,
                                                 'interrupted', false, 'outcome', 'answered'),
                              jsonb_build_object('index', 1, 'atMs', 9000, 'ttfaMs', 600 + i % 400,
                                                 'interrupted', i % 5 = 0, 'outcome', 'answered'),
                              jsonb_build_object('index', 2, 'atMs', 15000, 'ttfaMs', 700 + i % 300,
                                                 'interrupted', false, 'outcome', 'answered'))),
       1000 + i % 90000
FROM (
    SELECT CASE WHEN t = 0 THEN $1 ELSE 'hbench-' || lpad(t::text, 3, '0') END AS tenant,
           'b' || md5(t::text || '-' || i::text) AS session_id,
           'agent-' || (i % $3) AS agent,
           (ARRAY['us-east', 'eu-west', 'ap-south'])[1 + i % 3] AS region,
           (ARRAY['caller-left', 'caller-left', 'caller-left', 'idle', 'max-duration'])[1 + i % 5] AS end_reason,
           now() - make_interval(secs => i * $4 + t) AS started_at, i
    FROM generate_series(0, $2 - 1) AS tenants(t), generate_series(0, $5 - 1) AS calls(i)
) AS generated
"""

COLUMNS = ("session_id, agent, region, room, channel, status, started_at, ended_at, end_reason, duration_ms,"
           " cost_micros, report -> 'turns' AS turns")


def bare_query(*, agent: bool, after: bool) -> str:
    """The page the gateway's store/session_records.page_query asks for, written out by hand."""
    where = ["tenant = $1"]
    if agent:
        where.append(f"agent = ${len(where) + 1}")
    if after:
        n = len(where) + 1
        where.append(f"(started_at, session_id) < (${n}, ${n + 1})")
    return (f"SELECT {COLUMNS} FROM sessions WHERE {' AND '.join(where)}"
            f" ORDER BY started_at DESC, session_id DESC LIMIT {PAGE + 1}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def figures(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(seconds) * 1000, 3), "p99_ms": round(percentile(seconds, 99) * 1000, 3),
            "n": len(seconds)}


def plan_nodes(plan: dict) -> list[str]:
    node = plan["Node Type"] + (f" using {plan['Index Name']}" if "Index Name" in plan else "")
    return [node] + [n for child in plan.get("Plans", []) for n in plan_nodes(child)]


async def load(url: str, tenant: str, tenants: int, per_tenant: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SET statement_timeout = 0")
        await conn.execute(GENERATE, tenant, tenants, AGENTS, SECONDS_APART, per_tenant)
        await conn.execute("VACUUM ANALYZE sessions")
        count = await conn.fetchval("SELECT count(*) FROM sessions")
    finally:
        await conn.close()
    assert count == tenants * per_tenant, count
    return time.perf_counter() - started


async def measure(url: str, gateway: GatewayProcess, headers: dict[str, str], tenant: str, samples: int) -> dict:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    key = SIGNING_KEY.encode()
    results: dict = {}
    try:
        deep = await conn.fetchrow("SELECT started_at, session_id FROM sessions WHERE tenant = $1"
                                   " ORDER BY started_at DESC, session_id DESC OFFSET 4999 LIMIT 1", tenant)
        agent_deep = await conn.fetchrow("SELECT started_at, session_id FROM sessions WHERE tenant = $1 AND agent = $2"
                                         " ORDER BY started_at DESC, session_id DESC OFFSET 999 LIMIT 1",
                                         tenant, "agent-3")
        cases = {
            "first": ({}, None, False),
            "deep": ({}, deep, False),
            "agent_first": ({"agent": "agent-3"}, None, True),
            "agent_deep": ({"agent": "agent-3"}, agent_deep, True),
        }
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
            # The gateway's floor: an authenticated answer from its watched copies (no database), the same way.
            floor = []
            for round_ in range(samples + 20):
                began = time.perf_counter()
                response = await http.get("/v1/agents")
                response.json()
                if round_ >= 20:
                    floor.append(time.perf_counter() - began)
            results["gateway_floor_get_agents"] = figures(floor)
            print(f"[bench] floor        GET /v1/agents p50 {results['gateway_floor_get_agents']['p50_ms']:7.2f} ms"
                  f" p99 {results['gateway_floor_get_agents']['p99_ms']:7.2f} ms", file=sys.stderr, flush=True)
            for name, (params, position, by_agent) in cases.items():
                query = dict(params)
                args: list = [tenant] + ([params["agent"]] if by_agent else [])
                if position is not None:
                    where = HistoryFilter(tenant=tenant, agent=params.get("agent"))
                    query["cursor"] = history_cursors.encode(
                        PagePosition(started_at=position["started_at"], session_id=position["session_id"]), where,
                        key=key)
                    args += [position["started_at"], position["session_id"]]
                sql = bare_query(agent=by_agent, after=position is not None)
                expected = [r["session_id"] for r in await conn.fetch(sql, *args)][:PAGE]
                first = (await http.get("/v1/sessions", params=query)).json()
                assert [item["sessionId"] for item in first["items"]] == expected, f"{name}: not the same page"
                via_gateway, bare = [], []
                for round_ in range(samples + 20):  # 20 warm-up rounds, alternating the two
                    began = time.perf_counter()
                    response = await http.get("/v1/sessions", params=query)
                    response.json()
                    took = time.perf_counter() - began
                    assert response.status_code == 200, response.text
                    began = time.perf_counter()
                    await conn.fetch(sql, *args)
                    took_bare = time.perf_counter() - began
                    if round_ >= 20:
                        via_gateway.append(took)
                        bare.append(took_bare)
                plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))[0]
                results[name] = {
                    "gateway": figures(via_gateway), "bare_sql": figures(bare),
                    "ratio_p50": round(statistics.median(via_gateway) / statistics.median(bare), 1),
                    "ratio_p99": round(percentile(via_gateway, 99) / percentile(bare, 99), 1),
                    "plan": plan_nodes(plan["Plan"]),
                    "plan_rows_read": plan["Plan"].get("Actual Rows"),
                    "plan_execution_ms": plan.get("Execution Time"),
                    "page_bytes": len(response.content),
                }
                print(f"[bench] {name:12} gateway p50 {results[name]['gateway']['p50_ms']:7.2f} ms"
                      f" p99 {results[name]['gateway']['p99_ms']:7.2f} ms | bare SQL p50"
                      f" {results[name]['bare_sql']['p50_ms']:6.2f} ms p99 {results[name]['bare_sql']['p99_ms']:6.2f}"
                      f" ms | plan: {', '.join(results[name]['plan'])}", file=sys.stderr, flush=True)
    finally:
        await conn.close()
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="requests per case (after 20 warm-up)")
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--per-tenant", type=int, default=10_000)
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="voxfleet-history-bench-"))
    info, world = attach_or_start(work, progress=lambda m: print(f"[world] {m}", file=sys.stderr, flush=True))
    postgres = PostgresServer(work / "postgres", log_dir=work / "logs").start()
    kube = Cluster.of(info)
    install_crds(kube)
    platform_namespace = kube.new_namespace("hbench")
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="hbench")
    gateway = None
    try:
        url = create_database(postgres.admin_url, "history_bench")
        migrations_runner.upgrade(url)
        print(f"[bench] generating {args.tenants * args.per_tenant:,} sessions", file=sys.stderr, flush=True)
        load_seconds = asyncio.run(load(url, tenant.name, args.tenants, args.per_tenant))
        print(f"[bench] generated in {load_seconds:.1f} s", file=sys.stderr, flush=True)
        gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                                 log_path=work / f"gateway-{uuid.uuid4().hex[:6]}.log",
                                 regions=livekit_regions(info.livekit_regions()),
                                 extra_env={"VOXFLEET_DATABASE_URL": url, "VOXFLEET_LOG_LEVEL": "warning",
                                            "VOXFLEET_ACCESS_LOG": "false",
                                            "VOXFLEET_RATE_LIMIT_PER_SECOND": "1000000",
                                            "VOXFLEET_RATE_LIMIT_BURST": "1000000"}).start()
        headers = tenant.headers()
        deadline = time.monotonic() + 30
        while httpx.get(f"{gateway.url}/v1/sessions", headers=headers, params={"limit": 1}).status_code != 200:
            assert time.monotonic() < deadline, "the gateway never served the bench tenant's history"
            time.sleep(0.2)
        loadavg = os.getloadavg()[0]
        cases = asyncio.run(measure(url, gateway, headers, tenant.name, args.samples))
        result = {"bench": "history", "sessions": args.tenants * args.per_tenant, "tenants": args.tenants,
                  "page": PAGE, "generate_seconds": round(load_seconds, 1), "cases": cases,
                  "machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg, "loadavg_end": os.getloadavg()[0]},
                  "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                  "wall_seconds": round(time.perf_counter() - wall, 1)}
        print("BENCH_JSON " + json.dumps(result, sort_keys=True))
        return 0
    finally:
        if gateway is not None:
            gateway.stop()
        delete_tenant(kube, tenant)
        kube.delete_namespace(platform_namespace)
        postgres.stop()
        postgres.remove_data()
        if world is not None:
            world.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
