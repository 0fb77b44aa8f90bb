"""Every panel of the chart's Grafana dashboard returns data from a real Prometheus after a few real calls.

The platform is real: a `voxfleet gateway` process, a tenant with an API key, agents PUT through the gateway
and a real `voxfleet worker` pod on the world's runner nodes (tests/gateway harnesses; the gateway starts while
the worker pod does, which halves the set-up time). Prometheus (T1's
`prometheus` fixture) scrapes the worker the way the chart's PodMonitor has the Prometheus Operator scrape it
(tests/telemetry/monitor_scrape_configs.py) and the gateway's operational port. The calls: a session request for
an agent without workers (a real 503 no_capacity, for the allocation-failure panel), then one call through the
gateway with a caller in the LiveKit room: the greeting, a question and its answer, a story the caller barges in
on, and a hang-up.

The test reads the dashboard JSON, so a new panel or template variable is covered without touching this file;
Grafana's variables become what "All" selects for the region and this test's tenant for the tenant (so other
tests' workers never answer for this one); `$__range` becomes the time since the calls began. A panel passes
when each of its queries returns at least one series with a number (not NaN), and a number above 0 where the
test's calls must show (latencies, the refusals, barge-ins, turn outcomes, free slots, builds); cost stays 0
with the offline providers, whose price is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.callers.caller_bot import CallerBot
from tests.chart.helm_render import CHART, MONITORING_API_VERSIONS, VALUES_FILES, render
from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import TenantUnderTest, create_tenant, delete_tenant
from tests.telemetry.monitor_scrape_configs import scrape_configs_for_monitors
from tests.worker.worker_harness import offline_spec
from voxfleet.world.prometheus import static_scrape_config

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
ALERT_RULES = CHART / "files" / "alert-rules.yaml"  # loaded too: each evaluates without error on real series
AGENT, AGENT_WITHOUT_WORKERS = "desk", "night"
HOURS = "We are open every day from nine in the morning to six in the evening."
STORY = ("Once upon a time there was a small town by the sea where every morning the people walked "
         "down to the water to watch the boats come home with the fish of the night.")


def agent_spec() -> dict:
    return offline_spec(
        intents=[{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS},
                 {"name": "story", "keywords": ["story"], "reply": STORY},
                 {"name": "stop", "keywords": ["stop", "no stop"], "reply": "Okay, I will stop."}],
        # barge-in as in tests/worker/test_worker_calls.py: voice confirmed in one 32 ms window
        turnDetection={"detector": "speech-timeout",
                       "vad": {"stopMs": 200, "startMs": 32, "minVolumePercent": 30, "confidencePercent": 60},
                       "timeouts": {"speechTimeoutMs": 300}},
        regions=[{"name": "us-east", "minWorkers": 0, "maxWorkers": 2}])


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL as Grafana stores it) for every panel target and every query template variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"]).groups()
            queries.append((f"variable ${variable['name']}", f"group by ({label}) ({metric})"))
    return queries


def as_promql(expr: str, *, tenant: str, range_seconds: int) -> str:
    promql = (expr.replace("$region", ".*").replace("$tenant", tenant)
              .replace("$__range", f"{range_seconds}s").replace("$__rate_interval", "1m"))
    assert "$" not in promql, f"a Grafana variable this test does not know: {promql}"
    return promql


def has_numbers(result: list[dict]) -> bool:
    return any(not math.isnan(float(series["value"][1])) for series in result)


# Panels whose figure the test's own calls make positive: there "returns data" means more than a 0.
POSITIVE_AFTER_THE_CALLS = ("Time to first audio", "Allocation failures", "Free slots", "Pipeline latency",
                            "Interruptions per turn", "Turn success rate", "Turn outcomes", "Components by version",
                            "Workers seen by the gateway", "Worker CPU")


def positive(result: list[dict]) -> bool:
    return any(float(series["value"][1]) > 0 for series in result)


@contextlib.contextmanager
def platform_with_a_worker(kube, pods, livekit, work_dir: Path):
    """(gateway, tenant): a gateway and a tenant whose AGENT has one Ready real worker pod; the gateway starts
    while the pod does."""
    platform_namespace = kube.new_namespace("vfdash")
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=work_dir / "gateway.log", regions=livekit_regions(livekit),
                             extra_env=session_gateway_env(VOXFLEET_LOG_LEVEL="info"))
    tenant: TenantUnderTest | None = None
    with ThreadPoolExecutor(1) as starter:
        starting = starter.submit(gateway.start)
        try:
            tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="dash")
            config_map = f"{AGENT}-config"
            names = worker_pods.create(kube, tenant.namespace, [
                worker_pods.agent_config_map(tenant.namespace, config_map, tenant=tenant.name, agent=AGENT,
                                             spec=agent_spec()),
                worker_pods.real_worker_pod(pods, tenant=tenant.name, agent=AGENT, region="us-east",
                                            namespace=tenant.namespace, config_map=config_map, name=f"{AGENT}-0")])
            worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)
            starting.result()
            with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as api:
                for agent in (AGENT, AGENT_WITHOUT_WORKERS):
                    assert api.put(f"/v1/agents/{agent}", json=agent_spec()).status_code in (200, 201)
            yield gateway, tenant
        finally:
            gateway.stop()
            if tenant is not None:
                delete_tenant(kube, tenant)
            kube.delete_namespace(platform_namespace)


async def place_calls(gateway: GatewayProcess, tenant: TenantUnderTest, prom) -> dict:
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as api:
        # A counter's labelled series appears at its first event, which a rate() cannot see as an increase:
        # a second refusal once Prometheus has the first is what the failure panel shows.
        for _ in range(2):
            refused = api.post(f"/v1/agents/{AGENT_WITHOUT_WORKERS}/sessions", json={})
            assert refused.status_code == 503 and refused.json()["code"] == "no_capacity", refused.text
            prom.wait_for_series(f'voxfleet_gateway_allocations_total{{agent="{AGENT_WITHOUT_WORKERS}",'
                                 f' result="no_capacity"}}', timeout=15)
        deadline = time.monotonic() + 15
        while (created := api.post(f"/v1/agents/{AGENT}/sessions", json={})).status_code == 503:
            assert time.monotonic() < deadline, "the gateway never saw the Ready worker"
            time.sleep(0.2)  # its Pod watch needs a moment for a pod that just turned Ready
        assert created.status_code == 201, created.text
    session = created.json()
    async with CallerBot(session["livekitUrl"], session["token"]) as caller:
        await caller.wait_for_agent_speech(timeout=20)
        asked = await caller.say("opening hours")
        await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=10)
        asked = await caller.say("story")
        story = await caller.heard.wait_for(lambda: (caller.voiced_frames(asked.voice_ended) or [None])[0],
                                            timeout=10, what="the story")
        await asyncio.sleep(max(0.0, story + 1.2 - time.monotonic()))  # well into the story, then barge in
        stop = await caller.say("no stop")
        await caller.wait_for_agent_speech(after=stop.voice_ended, timeout=10)
    return session


async def test_every_dashboard_panel_returns_data_after_real_calls(kube, pods, livekit, prometheus, tmp_path):
    began = time.monotonic()
    with platform_with_a_worker(kube, pods, livekit, tmp_path) as (gateway, tenant_under_test):
        tenant = tenant_under_test.name
        monitors = [m for m in render(values=(VALUES_FILES["production"],), api_versions=MONITORING_API_VERSIONS)
                    if m["kind"] == "PodMonitor"]
        operational = gateway.operational_url.removeprefix("http://")
        prom = prometheus([*scrape_configs_for_monitors(monitors, kubeconfig=kube.kubeconfig, interval="1s"),
                           static_scrape_config("gateway", [operational])], rule_files=[ALERT_RULES])
        # The worker's series exist at 0 before any call (it creates them at start): a rate() then counts
        # the first call too.
        prom.wait_for_series(f'voxfleet_worker_ttfa_seconds_count{{tenant="{tenant}"}}', timeout=30)
        prom.wait_for_series('voxfleet_build_info{component="gateway"}', timeout=30)
        ready_s = time.monotonic() - began

        calls_began = time.monotonic()
        session = await place_calls(gateway, tenant_under_test, prom)
        # The caller has left: once the session has ended (usage and duration counted) Prometheus has it all.
        prom.wait_for_series(f'voxfleet_worker_sessions_total{{tenant="{tenant}", end_reason="caller-left"}} > 0',
                             timeout=45)
        calls_s = time.monotonic() - calls_began

        range_seconds = math.ceil(time.monotonic() - calls_began) + 30
        empty: list[str] = []
        figures: dict[str, str] = {}
        for where, expr in dashboard_queries():
            result = prom.query(as_promql(expr, tenant=tenant, range_seconds=range_seconds))
            if not has_numbers(result):
                empty.append(f"{where}: {expr}")
            elif any(topic in where for topic in POSITIVE_AFTER_THE_CALLS) and not positive(result):
                empty.append(f"{where} (only zeros after calls that should show here): {expr}")
            else:
                figures[where] = ", ".join(f"{float(s['value'][1]):.3g}" for s in result[:4])
        outcomes = {s["metric"]["outcome"]: float(s["value"][1]) for s in prom.query(
            f'sum by (outcome) (voxfleet_worker_turn_outcomes_total{{tenant="{tenant}"}})')}
        barge_ins = prom.value(f'sum(voxfleet_worker_interruptions_total{{tenant="{tenant}"}})')
        versions = {s["metric"]["component"] for s in prom.query("voxfleet_build_info")}
        rules = [rule for group in prom._api("rules")["groups"] for rule in group["rules"]]
    print(f"dashboard: {len(figures)} queries with data, {len(empty)} empty; platform + Prometheus ready in"
          f" {ready_s:.1f} s, calls {calls_s:.1f} s; session {session['sessionId'][:12]}…; turn outcomes {outcomes},"
          f" barge-ins {barge_ins:g}; build info from {sorted(versions)}; alert rules evaluated:"
          f" {sum(r['health'] == 'ok' for r in rules)} of {len(rules)} healthy,"
          f" firing here: {sorted(r['name'] for r in rules if r.get('state') == 'firing') or 'none'}")
    for where, values in figures.items():
        print(f"  {where}: {values}")
    assert not empty, "dashboard queries without data after real calls:\n" + "\n".join(empty)
    # The worker judged the call's turns as docs/operations.md defines them: the question, the story (the caller
    # barged in with new words after it began) and the last answer before the hang-up are answered.
    assert outcomes.get("answered", 0) >= 2 and barge_ins >= 1, (outcomes, barge_ins)
    assert {"gateway", "worker"} <= versions
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert len(rules) >= 11 and not unhealthy, unhealthy
