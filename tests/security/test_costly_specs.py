"""Attack 3 of issue 16: one spec within the documented limits that is expensive to check (1,024 distinct RE2
patterns, each hundreds of repetitions of a Unicode class; a deeply nested tool schema) must not stall the
platform. Through the REST API the PUT is refused or accepted quickly while `/healthz` and another tenant's
requests keep their usual latency; through kubectl the operator judges it without holding up another agent.
The figures are printed on a pass too.
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import pytest
import yaml

from tests.api import costly_specs
from tests.security.hostile_platform import REGION, names_field, offline_spec, tool
from tests.world.waiting import wait_for

pytestmark = [pytest.mark.world, pytest.mark.timeout(600)]

INTENTS, PATTERNS_PER_INTENT = 64, 16  # the spec's documented maxima: 1,024 patterns
QUICK_S = 10.0  # "quickly": a person waiting on the PUT; the unbounded gateway took 262 s
# The gateway's event loop (/healthz) must keep its latency: 3x the quiet p99 at most, at least 250 ms on a shared
# 2-core machine. Another tenant's request also waits on the apiserver and the CPU the accepted spec's writes and
# checks take (gateway child process, apiserver, operator): judged looser here (not stalled); the 2x goal is
# bench/tenant_isolation_bench.py's, measured on a quiet machine.
LATENCY_FACTOR, LATENCY_FLOOR_MS = 3.0, 250.0
OTHER_TENANT_FACTOR, OTHER_TENANT_FLOOR_MS = 5.0, 500.0
GATEWAY_SHARE_MS = 250.0  # what the gateway may add to the apiserver's own latency of the same list


def regex_bomb() -> dict:
    """The worst RE2 spec the schema admits: every pattern ~0.2 s to compile unbounded (a ~480k-instruction
    program), each distinct so no cache helps."""
    intents = [{"name": f"i{i}", "reply": "ok",
                "patterns": [f"\\pL{{{300 + j}}}z{i:02d}" for j in range(PATTERNS_PER_INTENT)]}
               for i in range(INTENTS)]
    return offline_spec(intents=intents)


def deep_schema(depth: int = 400) -> dict:
    schema: dict = {"type": "string", "pattern": "\\pL{300}"}
    for level in range(depth):
        schema = {"type": "object", "properties": {f"p{level}": schema}}
    return schema


@pytest.fixture(scope="module")
def tenants(platform):
    return platform.add_tenant("bomb", groups=["bomb-devs"]), platform.add_tenant("calm")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _sample(http: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    assert http.get(path).status_code == 200
    return (time.perf_counter() - started) * 1000


def _while_putting(platform, attacker, agent: str, specs: list[dict], calm) -> dict:
    """PUT each spec in turn as ``attacker`` in a thread (each distinct: no cache helps); meanwhile sample /healthz
    and the calm tenant's agent list."""
    result: dict = {"responses": [], "seconds": []}

    def put() -> None:
        with platform.api(attacker, timeout=600) as http:
            for spec in specs:
                started = time.perf_counter()
                result["responses"].append(http.put(f"/v1/agents/{agent}", json=spec))
                result["seconds"].append(time.perf_counter() - started)

    thread = threading.Thread(target=put)
    health, calm_list, direct = [], [], []
    rest = platform.kube.rest()
    with platform.api() as probe, platform.api(calm) as calm_http:
        thread.start()
        started = time.monotonic()
        while thread.is_alive() or time.monotonic() - started < 2.0:
            health.append(_sample(probe, "/healthz"))
            calm_list.append(_sample(calm_http, "/v1/agents"))
            direct.append(_direct(rest, calm))
            time.sleep(0.02)
    rest.close()
    thread.join()
    result.update(health=health, calm=calm_list, direct=direct)
    return result


def _direct(rest, tenant) -> float:
    """The same list straight from the apiserver (admin), to tell the gateway's share from the cluster's."""
    started = time.perf_counter()
    rest.list("VoiceAgent", tenant.namespace)
    return (time.perf_counter() - started) * 1000


def _quiet(platform, calm) -> tuple[list[float], list[float], list[float]]:
    rest = platform.kube.rest()
    try:
        with platform.api() as probe, platform.api(calm) as calm_http:
            for _ in range(5):
                _sample(probe, "/healthz")  # warm the connection
            return ([_sample(probe, "/healthz") for _ in range(60)],
                    [_sample(calm_http, "/v1/agents") for _ in range(30)], [_direct(rest, calm) for _ in range(30)])
    finally:
        rest.close()


def _judge(what: str, quiet: list[float], busy: list[float], factor: float = LATENCY_FACTOR,
           floor_ms: float = LATENCY_FLOOR_MS) -> None:
    quiet_p99, busy_p99 = _percentile(quiet, 0.99), _percentile(busy, 0.99)
    bound = max(factor * quiet_p99, floor_ms)
    print(f"{what}: quiet p50 {statistics.median(quiet):.1f} ms p99 {quiet_p99:.1f} ms; during the attack"
          f" p50 {statistics.median(busy):.1f} ms p99 {busy_p99:.1f} ms max {max(busy):.1f} ms ({len(busy)} samples;"
          f" bound {bound:.0f} ms)")
    assert busy_p99 <= bound, f"{what}: p99 {busy_p99:.0f} ms while the spec was checked (bound {bound:.0f} ms)"


ATTACKS = {
    # issue 16's spec: refused at the first pattern over the per-pattern cap
    "regex-bomb": lambda seed, url: {**offline_spec(), **costly_specs.issue_spec(seed)},
    # patterns filling the spec's whole RE2 budget, each near the cap: the most compiling a spec may cause, accepted
    "worst-accepted": lambda seed, url: {**offline_spec(), **costly_specs.worst_accepted_spec(seed)},
    # patterns together past the budget: refused at the crossing pattern
    "over-budget": lambda seed, url: {**offline_spec(), **costly_specs.over_budget_spec(seed)},
    # a tool schema nested 400 levels deep
    "deep-schema": lambda seed, url: offline_spec(tools=[tool(f"{url}/t{seed}", parameters=deep_schema())]),
}
ROUNDS = 5  # distinct specs PUT one after another


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_costly_spec_is_judged_quickly_and_the_gateway_keeps_answering(platform, tenants, attack):
    attacker, calm = tenants
    specs = [ATTACKS[attack](costly_specs.fresh_seed(), platform.listener.url) for _ in range(ROUNDS)]
    quiet_health, quiet_calm, quiet_direct = _quiet(platform, calm)
    outcome = _while_putting(platform, attacker, attack, specs, calm)
    statuses = [r.status_code for r in outcome["responses"]]
    print(f"{attack}: {len(httpx.Request('PUT', 'http://x', json=specs[0]).content)} bytes x {ROUNDS}; PUT"
          f" answered {statuses} in {', '.join(f'{s:.2f}' for s in outcome['seconds'])} s; first:"
          f" {outcome['responses'][0].text[:240]}")
    for response in outcome["responses"]:
        assert response.status_code in (200, 201, 422), response.text
        if response.status_code == 422:
            assert names_field(response, "tools[0]" if attack == "deep-schema" else "intents"), response.text
    assert max(outcome["seconds"]) < QUICK_S
    _judge(f"{attack}: GET /healthz", quiet_health, outcome["health"])
    _judge(f"{attack}: the same list from the apiserver directly (not judged)", quiet_direct, outcome["direct"],
           float("inf"), 0)
    # The gateway may add little to what the apiserver itself takes meanwhile (both share the machine's 2 cores
    # with the accepted specs' writes, watches and checks).
    _judge(f"{attack}: another tenant's GET /v1/agents", quiet_calm, outcome["calm"], OTHER_TENANT_FACTOR,
           max(OTHER_TENANT_FLOOR_MS, _percentile(outcome["direct"], 0.99) + GATEWAY_SHARE_MS))


def test_kubectl_apply_of_the_regex_bomb_holds_up_no_other_agent(platform, tenants):
    attacker, _ = tenants
    bomb = {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "VoiceAgent",
            "metadata": {"name": "kubectl-bomb", "namespace": attacker.namespace}, "spec": regex_bomb()}
    plain = {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "VoiceAgent",
             "metadata": {"name": "plain", "namespace": attacker.namespace},
             "spec": offline_spec(regions=[{"name": REGION, "minWorkers": 0, "maxWorkers": 1}])}
    started = time.monotonic()
    applied = platform.kubectl_as("bomb-devs", "apply", "-f", "-", input=yaml.safe_dump(bomb))
    applied_s = time.monotonic() - started
    print(f"kubectl apply of the regex bomb: exit {applied.returncode} in {applied_s:.2f} s"
          f" {(applied.stderr or applied.stdout).strip()[:300]}")
    assert platform.kubectl_as("bomb-devs", "apply", "-f", "-", input=yaml.safe_dump(plain)).returncode == 0
    plain_at = time.monotonic()

    def observed(name: str):
        agent = platform.agent_object(attacker.namespace, name)
        return agent and (agent.get("status") or {}).get("observedGeneration") == agent["metadata"]["generation"]

    wait_for("the plain agent observed", lambda: observed("plain"), timeout=QUICK_S, interval=0.2)
    plain_s = time.monotonic() - plain_at
    judged = None
    if applied.returncode == 0:
        wait_for("the bomb judged", lambda: observed("kubectl-bomb"), timeout=60, interval=0.2)
        judged = platform.degraded(attacker.namespace, "kubectl-bomb")
    print(f"operator: the plain agent observed {plain_s:.2f} s after it was applied; the bomb: "
          f"{judged.get('reason') if judged else 'refused by the apiserver'}"
          f" {(judged or {}).get('message', '')[:200]}")
    assert plain_s < QUICK_S
    if judged and judged.get("status") == "True":
        assert "intents" in judged.get("message", ""), judged
