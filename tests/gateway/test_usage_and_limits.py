"""Usage, prices and monthly limits (issue 18, S5).

The price list's integer arithmetic and the month's boundaries are checked on their own; the rest runs against the
real PostgreSQL (a database of this module, migrated to every head) and a real `voxfleet gateway` with stand-in
worker pods: usage rows written through `store.usage.add_call` (what the gateway does when a call ends) read back
through `GET /v1/usage`, by agent and day, never another tenant's; a tenant over its monthly minutes (or spend) is
refused with a 429 naming the limit while another tenant keeps creating sessions; bad input is a 422 naming the
field; a gateway without a database refuses a limited tenant's calls instead of admitting them unchecked.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import text

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant, key_headers, wait_until_served
from voxfleet.api.call_report import CallUsage
from voxfleet.gateway.pricing import PriceList, decimal_amount
from voxfleet.gateway.spend_limits import MINUTES_FIELD, SPEND_FIELD, LimitUse, Month, month_use
from voxfleet.store import usage
from voxfleet.store.database import Database

CHART_VALUES = Path(__file__).resolve().parents[2] / "charts" / "voxfleet" / "values.yaml"
AGENT = "support"
SPEC = {"greeting": "Hello!", "regions": [{"name": "us-east", "minWorkers": 0}]}
# The gateway under test prices in euros, with round figures the assertions can follow.
PRICES = PriceList(currency="EUR", platform_per_minute_micros=20_000, stt_per_minute_micros=6_000,
                   llm_prompt_per_1k_tokens_micros=500, llm_completion_per_1k_tokens_micros=1_500,
                   tts_per_1k_characters_micros=15_000)


# --- the price list and the month, on their own ---------------------------------------------------------------------

def test_a_call_is_priced_in_integer_micro_units_rounded_once():
    usage_ = CallUsage(stt_ms=30_000, llm_prompt_tokens=1_234, llm_completion_tokens=321, tts_characters=999)
    cost = PRICES.cost_micros(usage_, call_ms=61_500)
    # each term exact: 20,500 (61.5 s at 20,000/min) + 3,000 + 617 + 481.5 + 14,985 = 39,583.5 -> 39,584 (half up)
    assert cost == 39_584
    assert isinstance(cost, int)
    assert PRICES.cost_micros(CallUsage(), call_ms=0) == 0
    assert PriceList(platform_per_minute_micros=1).cost_micros(CallUsage(), call_ms=29_999) == 0  # 0.49999 rounds down
    assert PriceList(platform_per_minute_micros=1).cost_micros(CallUsage(), call_ms=30_000) == 1  # 0.5 rounds up
    # Far past any real call (CallUsage's ceilings) the arithmetic stays exact: Python integers, no float.
    huge = CallUsage(stt_ms=86_400_000, llm_prompt_tokens=10**9, llm_completion_tokens=10**9, tts_characters=10**8)
    expected = (20_000 * 86_400_000 + 6_000 * 86_400_000 + (500 + 1_500) * 10**9 * 60 + 15_000 * 10**8 * 60
                + 30_000) // 60_000
    assert PRICES.cost_micros(huge, call_ms=86_400_000) == expected
    print(f"61.5 s call with provider units: {cost} micros = {decimal_amount(cost)} EUR; largest report: {expected}")


def test_changed_prices_change_the_cost_and_free_units_cost_nothing():
    call = CallUsage(stt_ms=60_000, llm_prompt_tokens=2_000, llm_completion_tokens=1_000, tts_characters=2_000)
    base = PRICES.cost_micros(call, call_ms=60_000)
    dearer_tts = PRICES.model_copy(update={"tts_per_1k_characters_micros": 30_000}).cost_micros(call, call_ms=60_000)
    assert dearer_tts - base == 30_000  # 2,000 characters at 15,000 more per thousand
    free_platform = PRICES.model_copy(update={"platform_per_minute_micros": 0}).cost_micros(call, call_ms=60_000)
    assert base - free_platform == 20_000
    everything_free = PriceList(platform_per_minute_micros=0, stt_per_minute_micros=0,
                                llm_prompt_per_1k_tokens_micros=0, llm_completion_per_1k_tokens_micros=0,
                                tts_per_1k_characters_micros=0)
    assert everything_free.cost_micros(call, call_ms=3_600_000) == 0
    print(f"cost of one minute: {base} micros; with TTS at twice the price: {dearer_tts}; platform free: {free_platform}")


def test_the_price_list_refuses_floats_negative_prices_and_unknown_names():
    for bad in ({"platformPerMinuteMicros": 1.5}, {"sttPerMinuteMicros": -1}, {"currency": "usd"},
                {"ttsPer1kCharactersMicros": 10**12}, {"llmPromptPer1KTokensMicro": 3}):
        with pytest.raises(ValueError):
            PriceList.model_validate(bad)
    with pytest.raises(ValueError):
        PRICES.cost_micros(CallUsage(), call_ms=-1)


def test_the_charts_price_list_is_one_the_gateway_reads():
    values = yaml.safe_load(CHART_VALUES.read_text())["gateway"]["prices"]
    prices = PriceList.model_validate(json.loads(json.dumps(values)))  # as VOXFLEET_PRICES carries it
    assert prices.model_dump(by_alias=True) == values
    print(f"chart prices: {values}")


def test_decimal_amounts_are_exact_strings():
    assert decimal_amount(0) == "0.000000"
    assert decimal_amount(1) == "0.000001"
    assert decimal_amount(39_584) == "0.039584"
    assert decimal_amount(12_345_678_901_234_567) == "12345678901.234567"  # beyond a float's exact integers


def test_the_month_runs_from_its_first_instant_to_the_next_months_in_utc():
    december = Month.containing(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert december.starts_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert december.resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert (december.first_day, december.last_day) == (date(2026, 12, 1), date(2026, 12, 31))
    leap = Month.containing(datetime(2028, 2, 10, tzinfo=UTC))
    assert leap.last_day == date(2028, 2, 29)
    # 2027-03-01 00:30 in UTC+02:00 is still February in UTC: months are UTC months.
    from datetime import timezone
    east = Month.containing(datetime(2027, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))))
    assert east.starts_at == datetime(2027, 2, 1, tzinfo=UTC)


def test_a_limit_is_reached_at_its_figure_and_unset_means_no_limit():
    assert not LimitUse(MINUTES_FIELD, 2, 119_999, 60_000).reached
    assert LimitUse(MINUTES_FIELD, 2, 120_000, 60_000).reached
    assert LimitUse(MINUTES_FIELD, 0, 0, 60_000).reached  # a limit of 0 admits nothing
    unset = LimitUse(SPEND_FIELD, None, 10**12, 10_000)
    assert not unset.reached and unset.remaining is None
    assert LimitUse(SPEND_FIELD, 5, 12_345, 10_000).remaining == 3.7655


# --- against PostgreSQL and a gateway -------------------------------------------------------------------------------

def _run(coroutine):
    return asyncio.run(coroutine)


async def _add_calls(url: str, calls: list[dict]) -> None:
    database = await Database.connect(url)
    try:
        async with database.transaction() as conn:
            for call in calls:
                await usage.add_call(conn, **call)
    finally:
        await database.close()


def _call(tenant: str, agent: str, day: date, call_ms: int, **units: int) -> dict:
    call_usage = CallUsage(**units)
    return {"tenant": tenant, "agent": agent, "day": day, "call_ms": call_ms, "usage": call_usage,
            "cost_micros": PRICES.cost_micros(call_usage, call_ms)}


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, livekit, module_database):
    env = session_gateway_env(VOXFLEET_PRICES=PRICES.model_dump_json(by_alias=True))
    process = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            extra_env=env, database_url=module_database)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenants(kube, platform_namespace, gateway):
    """Each test writes usage only to tenants no other test writes to (xdist may run them in any order, and a
    worker process shares this module's fixtures between the tests it runs): reader and neighbour for reading
    back, capped (2 monthly minutes) and free (no limits, traffic) with a stand-in worker each, spender (1 cent a
    month)."""
    def tenant(prefix: str, **quotas: int):
        return create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix=prefix, quotas=quotas)

    made = {"reader": tenant("read"), "neighbour": tenant("nbr"), "capped": tenant("cap", monthlyMinutes=2),
            "free": tenant("free"), "spender": tenant("spend", monthlySpendCents=1)}
    for made_tenant in made.values():
        with _client(gateway, made_tenant) as http:
            wait_until_served(http)
    yield made
    for tenant in made.values():
        delete_tenant(kube, tenant)


@pytest.fixture(scope="module")
def workers(kube, pods, gateway, tenants):
    for role in ("capped", "free", "spender"):
        with _client(gateway, tenants[role]) as http:
            assert http.put(f"/v1/agents/{AGENT}", json=SPEC).status_code == 201
    for role in ("capped", "free"):
        tenant = tenants[role]
        names = worker_pods.create(kube, tenant.namespace, [worker_pods.standin_pod(
            pods, tenant=tenant.name, agent=AGENT, region="us-east", slots=4, name=f"{role}-0")])
        worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)
    return tenants


def _client(gateway, tenant) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15)


def _create(http: httpx.Client, *, wait_for_worker: bool = True) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:  # the gateway's Pod watch needs a moment to see a worker that just turned Ready
        response = http.post(f"/v1/agents/{AGENT}/sessions", json={})
        if not (wait_for_worker and response.status_code == 503) or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def _today() -> date:
    return datetime.now(UTC).date()


needs_world = pytest.mark.world  # the tests above need no server


@needs_world
def test_usage_written_through_add_call_reads_back_by_agent_and_day_and_never_another_tenants(
        gateway, tenants, module_database):
    reader, other = tenants["reader"], tenants["neighbour"]
    today = _today()
    month = Month.containing(datetime.now(UTC))
    earlier = month.first_day - timedelta(days=40)  # a day of an earlier month: in the range, not in the month
    calls = [_call(reader.name, "support", today, 90_000, stt_ms=40_000, llm_prompt_tokens=1_200,
                   llm_completion_tokens=300, tts_characters=800),
             _call(reader.name, "support", today, 30_000, stt_ms=10_000, tts_characters=100),
             _call(reader.name, "sales", earlier, 600_000, stt_ms=200_000, llm_prompt_tokens=9_000),
             # another tenant, same agent name and day: never in reader's answer
             _call(other.name, "support", today, 1, stt_ms=0),
             _call(other.name, "hidden-agent", today, 5_000)]
    _run(_add_calls(module_database, calls))

    with _client(gateway, reader) as http:
        answer = http.get("/v1/usage", params={"from": earlier.isoformat(), "to": today.isoformat()})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        by_key = {(item["day"], item["agent"]): item for item in report["items"]}
        assert set(by_key) == {(today.isoformat(), "support"), (earlier.isoformat(), "sales")}
        support = by_key[(today.isoformat(), "support")]
        expected_cost = calls[0]["cost_micros"] + calls[1]["cost_micros"]
        assert support == {**support, "sessions": 2, "callMs": 120_000, "minutes": 2.0, "sttMs": 50_000,
                           "llmPromptTokens": 1_200, "llmCompletionTokens": 300, "ttsCharacters": 900,
                           "costMicros": expected_cost, "cost": decimal_amount(expected_cost)}
        assert report["currency"] == "EUR"
        assert (report["from"], report["to"]) == (earlier.isoformat(), today.isoformat())
        total_cost = sum(call["cost_micros"] for call in calls[:3])
        assert report["totals"]["sessions"] == 3 and report["totals"]["costMicros"] == total_cost
        # The month counts only this month's days; reader has no limits, and says so.
        assert report["month"]["totals"]["sessions"] == 2
        assert report["month"]["resetsAt"].startswith(month.resets_at.date().isoformat())
        assert [(limit["field"], limit["limit"], limit["reached"]) for limit in report["month"]["limits"]] == [
            (MINUTES_FIELD, None, False), (SPEND_FIELD, None, False)]
        assert "hidden-agent" not in answer.text and other.name not in answer.text

        only_sales = http.get("/v1/usage", params={"from": earlier.isoformat(), "agent": "sales"}).json()
        assert [(item["agent"], item["callMs"]) for item in only_sales["items"]] == [("sales", 600_000)]
        default_period = http.get("/v1/usage").json()  # the month so far
        assert default_period["from"] == month.first_day.isoformat() and default_period["to"] == today.isoformat()
        assert {item["agent"] for item in default_period["items"]} == {"support"}

    with _client(gateway, other) as http:
        theirs = http.get("/v1/usage").json()
        assert {item["agent"] for item in theirs["items"]} == {"support", "hidden-agent"}
        assert theirs["totals"]["callMs"] == 5_001  # reader's 120,000 ms of "support" today are not theirs
    print(f"reader's day of support: {support['sessions']} calls, {support['minutes']} min, {support['cost']} EUR;"
          f" period total {report['totals']['cost']} EUR")


@needs_world
def test_a_tenant_over_its_monthly_minutes_gets_429_naming_the_limit_while_another_tenant_creates_sessions(
        gateway, workers, module_database):
    capped, free = workers["capped"], workers["free"]
    with _client(gateway, capped) as capped_http, _client(gateway, free) as free_http:
        first = _create(capped_http)  # 0 of 2 minutes used: admitted
        assert first.status_code == 201, first.text
        assert capped_http.delete(f"/v1/sessions/{first.json()['sessionId']}").status_code == 204
        # The gateway's own path counts that call (its end recorded -> add_call), erased as it was: erasing calls
        # never lowers a month's use (docs/security.md).
        waited = time.monotonic()
        while (recorded := capped_http.get("/v1/usage").json()["month"]["totals"])["sessions"] < 1:
            assert time.monotonic() - waited < 20, recorded
            time.sleep(0.2)
        waited = time.monotonic() - waited

        # Its calls of this month reach the limit (as the gateway records ended calls: add_call).
        _run(_add_calls(module_database, [_call(capped.name, AGENT, _today(), 75_000),
                                         _call(capped.name, AGENT, _today(), 45_000)]))
        refused = capped_http.post(f"/v1/agents/{AGENT}/sessions", json={})
        assert refused.status_code == 429, refused.text
        body = refused.json()
        month = Month.containing(datetime.now(UTC))
        resets_at = month.resets_at.isoformat().replace("+00:00", "Z")
        assert body["code"] == "monthly_limit_reached"
        assert (body["limit"], body["limitValue"], body["resetsAt"]) == (MINUTES_FIELD, 2, resets_at)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert MINUTES_FIELD in body["message"] and resets_at in body["message"]
        # (at least 2.0: the session created above may count its second or so once its end is recorded)
        assert [(d["field"], d["limit"], d["resetsAt"]) for d in body["details"]] == [(MINUTES_FIELD, 2, resets_at)]
        assert 2.0 <= body["details"][0]["used"] < 2.5
        retry_after = int(refused.headers["retry-after"])
        to_reset = (month.resets_at - datetime.now(UTC)).total_seconds()
        assert abs(retry_after - to_reset) < 120, (retry_after, to_reset)

        # Another tenant, with traffic of its own, is unaffected.
        _run(_add_calls(module_database, [_call(free.name, AGENT, _today(), 3_600_000)]))
        admitted = [_create(free_http) for _ in range(2)]
        assert [r.status_code for r in admitted] == [201, 201], [r.text for r in admitted]
        for response in admitted:
            free_http.delete(f"/v1/sessions/{response.json()['sessionId']}")

        limits = {limit["field"]: limit for limit in capped_http.get("/v1/usage").json()["month"]["limits"]}
        assert limits[MINUTES_FIELD]["remaining"] == 0.0 and limits[MINUTES_FIELD]["reached"] is True
        assert limits[SPEND_FIELD]["limit"] is None and limits[SPEND_FIELD]["reached"] is False
    refusals = [float(line.rsplit(" ", 1)[1]) for line in gateway.metrics().splitlines()
                if line.startswith("voxfleet_gateway_monthly_limit_refusals_total{")
                and f'tenant="{capped.name}"' in line and f'limit="{MINUTES_FIELD}"' in line]
    assert refusals and refusals[0] >= 1, refusals
    print(f"capped: its erased call counted after {waited:.1f} s ({recorded['callMs']} ms); 429 {body['details'][0]}"
          f" Retry-After {retry_after} s; free: {len(admitted)} sessions created")


@needs_world
def test_a_tenant_over_its_monthly_spend_gets_429_naming_the_spend_limit(gateway, workers, module_database):
    spender = workers["spender"]
    with _client(gateway, spender) as http:
        before = http.post(f"/v1/agents/{AGENT}/sessions", json={})
        assert before.status_code == 503 and before.json()["code"] == "no_capacity"  # not refused by its limit
        _run(_add_calls(module_database, [{"tenant": spender.name, "agent": AGENT, "day": _today(), "call_ms": 1_000,
                                          "usage": CallUsage(), "cost_micros": 10_000}]))  # one cent
        refused = http.post(f"/v1/agents/{AGENT}/sessions", json={})
        assert refused.status_code == 429, refused.text
        assert [(d["field"], d["limit"], d["used"]) for d in refused.json()["details"]] == [(SPEND_FIELD, 1, 1.0)]
        assert (refused.json()["limit"], refused.json()["used"]) == (SPEND_FIELD, 1.0)
        assert int(refused.headers["retry-after"]) >= 1
    print(f"spender: {refused.json()['message']}")


def _problem_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    return " ".join(detail.get("field", "") for detail in response.json().get("details", []))


@needs_world
@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-13-01"}, "from"),
    ({"from": "2026/12/01"}, "from"),
    ({"to": "2027-02-30"}, "to"),
    ({"from": "1700000000"}, "from"),  # not a date, whatever a lax parser would make of it
    ({"from": "2026-12-02T00:00:00Z"}, "from"),
    ({"from": "2026-12-10", "to": "2026-12-09"}, "from"),
    ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days
    ({"agent": "Not_A_Name"}, "agent"),
    ({"agent": "a" * 64}, "agent"),
    ({"from": "x" * 100}, "from"),
])
def test_bad_usage_queries_are_422_naming_the_field(gateway, tenants, params, field):
    with _client(gateway, tenants["reader"]) as http:
        response = http.get("/v1/usage", params=params)
    assert field in _problem_field(response), response.text
    for value in params.values():  # the rejected input is never echoed
        if len(value) > 12:
            assert value not in response.text


@needs_world
def test_usage_needs_a_valid_key(gateway):
    assert httpx.get(f"{gateway.url}/v1/usage").status_code == 401
    assert httpx.get(f"{gateway.url}/v1/usage", headers=key_headers("vfk_not_a_key")).status_code == 401


@needs_world
def test_a_year_of_many_agents_is_refused_with_what_to_narrow_and_one_agents_year_is_answered(
        gateway, tenants, module_database):
    neighbour = tenants["neighbour"]

    async def many_agent_days() -> None:  # 14 agents x 365 days of 2025: 5,110 rows, beyond the 5,000 answered
        database = await Database.connect(module_database)
        try:
            async with database.transaction() as conn:
                await conn.execute(text(
                    "INSERT INTO usage_daily (tenant, day, agent, sessions, call_ms)"
                    " SELECT :tenant, DATE '2025-01-01' + d, 'bulk-' || a, 1, 60000"
                    " FROM generate_series(0, 364) AS d, generate_series(0, 13) AS a"), {"tenant": neighbour.name})
        finally:
            await database.close()

    _run(many_agent_days())
    with _client(gateway, neighbour) as http:
        started = time.perf_counter()
        refused = http.get("/v1/usage", params={"from": "2025-01-01", "to": "2025-12-31"})
        refused_ms = (time.perf_counter() - started) * 1000
        assert "from" in _problem_field(refused) and "agent" in refused.json()["message"]
        started = time.perf_counter()
        one_agent = http.get("/v1/usage", params={"from": "2025-01-01", "to": "2025-12-31", "agent": "bulk-3"})
        answered_ms = (time.perf_counter() - started) * 1000
        assert one_agent.status_code == 200, one_agent.text
        assert len(one_agent.json()["items"]) == 365 and one_agent.json()["totals"]["minutes"] == 365.0
    print(f"5,110 agent-days refused in {refused_ms:.0f} ms; one agent's 365 days answered in {answered_ms:.0f} ms"
          f" ({len(one_agent.content)} bytes)")


@needs_world
def test_the_monthly_check_is_one_range_scan_of_the_usage_key(database):
    """Among 100,000 rows of 500 other tenants, one tenant's month: the primary key's range, timed."""
    tenant = "probe-tenant"
    month = Month.containing(datetime.now(UTC))

    async def measure() -> tuple[str, list[float]]:
        db = await Database.connect(database)
        try:
            async with db.transaction() as conn:
                await conn.execute(text(
                    "INSERT INTO usage_daily (tenant, day, agent, sessions, call_ms, cost_micros)"
                    " SELECT 'other-' || t, CURRENT_DATE - d, 'agent-' || (t % 3), 1, 60000, 100"
                    " FROM generate_series(0, 499) AS t, generate_series(0, 199) AS d"))
                for agent in range(5):
                    await usage.add_call(conn, tenant=tenant, agent=f"a{agent}", day=datetime.now(UTC).date(),
                                         call_ms=60_000, usage=CallUsage(), cost_micros=100)
                await conn.execute(text("ANALYZE usage_daily"))
            async with db.engine.connect() as conn:
                plan = "\n".join(row[0] for row in await conn.execute(text(
                    "EXPLAIN SELECT sum(call_ms), sum(cost_micros) FROM usage_daily"
                    " WHERE tenant = :tenant AND day >= :first AND day <= :last"),
                    {"tenant": tenant, "first": month.first_day, "last": month.last_day}))
            timings = []
            for _ in range(200):
                started = time.perf_counter()
                figures = await month_use(db, tenant=tenant, month=month)
                timings.append((time.perf_counter() - started) * 1000)
            assert figures.sessions == 5 and figures.call_ms == 300_000
            return plan, timings
        finally:
            await db.close()

    plan, timings = _run(measure())
    assert "pk_usage_daily" in plan and "Seq Scan" not in plan, plan
    timings.sort()
    p50, p99 = statistics.median(timings), timings[int(len(timings) * 0.99) - 1]
    assert p99 < 250, timings[-10:]  # a loaded 2-core machine; the figure is printed
    print(f"month check over 100,005 rows: p50 {p50:.2f} ms, p99 {p99:.2f} ms; plan: {plan.splitlines()[0].strip()}")


@needs_world
def test_without_a_database_usage_is_503_and_a_limited_tenant_is_refused_not_admitted_unchecked(
        kube, platform_namespace, gateway_logs, livekit, workers):
    """A limit must hold or refuse: a gateway with no database cannot count a month's use."""
    bare = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                         extra_env=session_gateway_env())
    try:
        with _client(bare, workers["capped"]) as capped_http, _client(bare, workers["free"]) as free_http:
            wait_until_served(free_http)
            usage_answer = free_http.get("/v1/usage")
            assert usage_answer.status_code == 503 and usage_answer.json()["code"] == "database_not_configured"
            limited = capped_http.post(f"/v1/agents/{AGENT}/sessions", json={})
            assert limited.status_code == 503 and limited.json()["code"] == "database_not_configured", limited.text
            unlimited = _create(free_http)
            assert unlimited.status_code == 201, unlimited.text  # tenants without limits work as before
            free_http.delete(f"/v1/sessions/{unlimited.json()['sessionId']}")
    finally:
        bare.stop()
