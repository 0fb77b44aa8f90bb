"""A VoiceAgent whose spec is costly to check (applied with kubectl, past the gateway) is refused in seconds with
a Degraded condition naming the field, and the operator keeps reconciling the other agents meanwhile (issue 16:
the operator ran at 100% of a core for minutes on one such object, reconciling nothing else)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.costly_specs import fresh_seed, issue_spec, over_budget_spec, worst_accepted_spec
from tests.operator.conftest import operator_process
from tests.operator.fleet import Fleet, condition
from tests.operator.operator_process import OperatorProcess
from voxfleet.world.access import Cluster

pytestmark = [pytest.mark.world, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def simulated_operator(kube: Cluster, platform_namespace: str, shard: str, operator_logs: Path,
                       fleet: Fleet) -> Iterator[OperatorProcess]:
    process = operator_process(kube, platform_namespace, shard, operator_logs, real_workers=False)
    process.start()
    yield process
    fleet.delete_everything()
    process.stop()


@pytest.fixture(scope="module")
def tenant(simulated_operator: OperatorProcess, fleet: Fleet) -> str:
    name, namespace = fleet.create_tenant(allowedRegions=["us-east", "eu-west"], quotas={"maxWorkers": 6,
                                                                                       "maxAgents": 10})
    fleet.wait_tenant_ready(name)
    return namespace


def _invalid(fleet: Fleet, namespace: str, name: str) -> str:
    agent = fleet.wait_agent(namespace, name, "Degraded InvalidSpec", lambda a: (
        condition(a, "Degraded").get("reason") == "InvalidSpec"), timeout=60)
    return condition(agent, "Degraded")["message"]


def test_costly_specs_are_refused_naming_the_field_while_others_reconcile(simulated_operator, fleet, tenant):
    started = time.monotonic()
    fleet.create_agent(tenant, "issue16", issue_spec(fresh_seed()))
    fleet.create_agent(tenant, "over-budget", over_budget_spec(fresh_seed()))
    fleet.create_agent(tenant, "worst-ok", worst_accepted_spec(fresh_seed(), region="us-east"))
    fleet.create_agent(tenant, "healthy", {"regions": [{"name": "eu-west", "minWorkers": 1, "maxWorkers": 2}],
                                           "scaling": {"sessionsPerWorker": 2, "bufferSessions": 0}})
    healthy = fleet.wait_agent_ready(tenant, "healthy")
    ready_after = time.monotonic() - started
    issue = _invalid(fleet, tenant, "issue16")
    over = _invalid(fleet, tenant, "over-budget")
    refused_after = time.monotonic() - started
    print(f"\nhealthy agent Ready {ready_after:.1f} s after the costly ones were applied; both refused within"
          f" {refused_after:.1f} s\n  issue16: {issue}\n  over-budget: {over}")
    assert condition(healthy, "Degraded")["status"] == "False"
    assert issue.startswith("spec.intents[0].patterns[0]:") and "KiB of RE2 memory" in issue
    assert over.startswith("spec.intents[0].patterns[") and "200000 instructions" in over
    # The worst accepted spec is admitted: it is not Degraded for its spec.
    worst = fleet.agent(tenant, "worst-ok")
    assert condition(worst, "Degraded").get("reason") != "InvalidSpec"


def test_a_tool_schema_that_leaves_itself_is_refused_naming_the_keyword(simulated_operator, fleet, tenant):
    fleet.create_agent(tenant, "remote-ref", {
        "regions": [{"name": "us-east", "minWorkers": 0, "maxWorkers": 1}],
        "tools": [{"name": "lookup", "http": {"url": "https://tools.example.com/lookup"},
                   "parameters": {"type": "object", "properties": {"city": {"$ref": "http://127.0.0.1:9/x"}}}}]})
    message = _invalid(fleet, tenant, "remote-ref")
    print(f"\nremote-ref: {message}")
    assert message.startswith("spec.tools[0].parameters.properties.city.$ref:")
