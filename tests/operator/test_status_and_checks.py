"""Status, conditions and the checks the schema can't make (pure), plus the reconcile queue's guarantees."""

from __future__ import annotations

import asyncio

from voxfleet.api.voiceagent import VoiceAgentSpec, VoiceAgentStatus
from voxfleet.operator import conditions, spec_checks
from voxfleet.operator.cluster_view import SecretView
from voxfleet.operator.agent_status import (RegionFigures, build_agent_status, figures_differ, meaning_differs,
                                            status_differs)
from voxfleet.operator.reconcile_queue import ReconcileQueue
from voxfleet.operator.tenant_reconciler import TenantReconciler
from tests.operator.specs import AGENT_SPEC, agent_spec, platform


def _conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


def test_ready_status_validates_against_the_contract_model():
    figures = [RegionFigures("us-east", 2, ready=2, updated=2, active=3, free=5),
               RegionFigures("eu-west", 1, ready=1, updated=1, active=0, free=4)]
    status = build_agent_status(7, ["us-east", "eu-west"], figures, [], None, now="2025-01-01T00:00:00Z")
    model = VoiceAgentStatus.model_validate(status)
    assert (model.ready_workers, model.active_sessions, model.free_slots) == (3, 3, 9)
    assert model.region_names == "us-east,eu-west"
    assert model.observed_generation == 7
    found = _conditions(status)
    assert found["Ready"]["status"] == "True"
    assert found["Progressing"]["status"] == "False"
    assert found["Degraded"]["status"] == "False"


def test_not_ready_while_rolling_or_scaling():
    rolling = build_agent_status(1, ["us-east"], [RegionFigures("us-east", 2, ready=2, updated=1)], [], None)
    assert _conditions(rolling)["Ready"]["status"] == "False"
    assert _conditions(rolling)["Progressing"]["reason"] == "RollingOut"
    # Enough ready pods, but an old one is still there: the rollout is not done.
    old_left = build_agent_status(1, ["us-east"], [RegionFigures("us-east", 1, ready=2, updated=1,
                                                                 rolled_out=False)], [], None)
    assert _conditions(old_left)["Ready"]["status"] == "False"
    assert _conditions(old_left)["Progressing"]["reason"] == "RollingOut"
    draining = build_agent_status(1, ["us-east"], [RegionFigures("us-east", 1, ready=1, updated=1),
                                                   RegionFigures("eu-west", 0, ready=1, draining=True)], [], None)
    assert _conditions(draining)["Ready"]["status"] == "True"
    assert _conditions(draining)["Progressing"]["reason"] == "DrainingRegion"


def test_degraded_carries_the_problem_and_blocking_ones_make_it_not_ready():
    problem = spec_checks.Problem("ImageNotAllowed", "spec.worker.image 'x' is not allowed", blocking=True)
    status = build_agent_status(2, ["us-east"], [RegionFigures("us-east", 1, ready=1, updated=1)], [problem], None)
    found = _conditions(status)
    assert (found["Degraded"]["status"], found["Degraded"]["reason"]) == ("True", "ImageNotAllowed")
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "ImageNotAllowed")


def test_unchanged_picture_keeps_transition_times_and_needs_no_write():
    figures = [RegionFigures("us-east", 1, ready=1, updated=1)]
    first = build_agent_status(1, ["us-east"], figures, [], None, now="2025-01-01T00:00:00Z")
    again = build_agent_status(1, ["us-east"], figures, [], first, now="2025-06-01T00:00:00Z")
    assert not status_differs(again, first)
    moved = build_agent_status(1, ["us-east"], [RegionFigures("us-east", 1, ready=1, updated=1, active=1)], [],
                               first, now="2025-06-01T00:00:00Z")
    assert status_differs(moved, first)
    assert _conditions(moved)["Ready"]["lastTransitionTime"] == "2025-01-01T00:00:00Z"


def test_a_tenants_agent_count_coalesces_only_while_it_stays_above_zero():
    """The deletion policy reads status.agents: reaching or leaving zero is written at once."""
    conditions_now = [{"type": "Ready", "status": "True", "reason": "Provisioned"}]
    status = {"observedGeneration": 1, "namespace": "t", "conditions": conditions_now}
    assert TenantReconciler._count_only({**status, "agents": 3}, {**status, "agents": 2})
    assert not TenantReconciler._count_only({**status, "agents": 1}, {**status, "agents": 0})
    assert not TenantReconciler._count_only({**status, "agents": 0}, {**status, "agents": 1})
    degraded = [{"type": "Ready", "status": "False", "reason": "InvalidSpec"}]
    assert not TenantReconciler._count_only({**status, "agents": 3, "conditions": degraded}, {**status, "agents": 2})


def test_figures_alone_are_not_a_change_of_meaning_but_conditions_and_generations_are():
    """Figures alone coalesce longer (status_figures_interval_seconds); what a reader acts on goes out quickly."""
    ready = build_agent_status(1, ["us-east"], [RegionFigures("us-east", 2, ready=2, updated=2)], [], None)
    busier = build_agent_status(1, ["us-east"], [RegionFigures("us-east", 2, ready=2, updated=2, active=3)], [],
                                ready)
    assert status_differs(busier, ready) and not meaning_differs(busier, ready)
    scaling = build_agent_status(1, ["us-east"], [RegionFigures("us-east", 3, ready=2, updated=2)], [], ready)
    assert _conditions(scaling)["Ready"]["status"] != _conditions(ready)["Ready"]["status"] or \
        _conditions(scaling)["Progressing"]["status"] != _conditions(ready)["Progressing"]["status"]
    assert meaning_differs(scaling, ready)
    newer = build_agent_status(2, ["us-east"], [RegionFigures("us-east", 2, ready=2, updated=2)], [], ready)
    assert meaning_differs(newer, ready)
    assert meaning_differs(ready, None)


def test_a_change_of_wording_alone_is_neither_meaning_nor_figures():
    """Pools settling region by region change only the conditions' messages: that waits for the next change
    (status_wording_delay_seconds from when it is first seen), while a figure changed with it goes out at the
    figures' pace."""
    regions = ["us-east", "eu-west"]
    both = build_agent_status(1, regions, [RegionFigures(r, 0, rolled_out=False) for r in regions], [], None)
    one = build_agent_status(1, regions, [RegionFigures("us-east", 0), RegionFigures("eu-west", 0, rolled_out=False)],
                             [], both)
    assert _conditions(one)["Progressing"]["message"] != _conditions(both)["Progressing"]["message"]
    assert status_differs(one, both) and not meaning_differs(one, both) and not figures_differ(one, both)
    busier = build_agent_status(1, regions, [RegionFigures("us-east", 0, active=1),
                                             RegionFigures("eu-west", 0, rolled_out=False)], [], both)
    assert figures_differ(busier, both) and not meaning_differs(busier, both)
    assert figures_differ(both, None)


def test_condition_transition_time_moves_only_with_status():
    old = conditions.merge(None, [conditions.Wanted("Ready", "False", "X")], 1, now="t1")
    same = conditions.merge(old, [conditions.Wanted("Ready", "False", "Y", "other")], 2, now="t2")
    flipped = conditions.merge(same, [conditions.Wanted("Ready", "True", "Z")], 3, now="t3")
    assert [c["lastTransitionTime"] for c in (old[0], same[0], flipped[0])] == ["t1", "t1", "t3"]


def _secret(name: str, *keys: str, tenant_secret: bool = True) -> SecretView:
    return SecretView("tenant-acme", name, frozenset(keys), tenant_secret, None)


def test_secret_checks_name_the_secret_and_spec_path_never_a_value():
    spec = VoiceAgentSpec.model_validate(AGENT_SPEC)
    problems = spec_checks.check_secrets(spec, "tenant-acme", {"llm-keys": None,
                                                               "tool-keys": _secret("tool-keys", "orders")},
                                         platform())
    reasons = sorted(p.reason for p in problems)
    assert reasons == ["SecretKeyMissing", "SecretMissing"]
    missing = next(p for p in problems if p.reason == "SecretMissing")
    assert "'llm-keys'" in missing.message and "spec.pipeline.llm.secretRef" in missing.message
    assert "PUT /v1/secrets/llm-keys" in missing.message
    key_missing = next(p for p in problems if p.reason == "SecretKeyMissing")
    assert "'crm'" in key_missing.message and "spec.worker.env[CRM_TOKEN]" in key_missing.message
    assert all(p.blocking for p in problems)
    assert spec_checks.check_secrets(spec, "ns", {"llm-keys": _secret("llm-keys", "openai"),
                                                  "tool-keys": _secret("tool-keys", "orders", "crm")},
                                     platform()) == []


def test_only_tenant_secrets_may_be_named_and_never_the_worker_token():
    spec = VoiceAgentSpec.model_validate(AGENT_SPEC)
    unlabelled = {"llm-keys": _secret("llm-keys", "openai", tenant_secret=False),
                  "tool-keys": _secret("tool-keys", "orders", "crm")}
    [problem] = spec_checks.check_secrets(spec, "tenant-acme", unlabelled, platform())
    assert problem.reason == "SecretNotAllowed" and problem.blocking
    assert "spec.pipeline.llm.secretRef" in problem.message and "PUT /v1/secrets/{name}" in problem.message
    token_name = platform().worker_token_secret
    stealing = VoiceAgentSpec.model_validate({**AGENT_SPEC, "pipeline": {
        **AGENT_SPEC["pipeline"], "llm": {**AGENT_SPEC["pipeline"]["llm"],
                                          "secretRef": {"name": token_name, "key": "token"}}}})
    labelled_token = {token_name: _secret(token_name, "token"), "tool-keys": _secret("tool-keys", "orders", "crm")}
    problems = spec_checks.check_secrets(stealing, "tenant-acme", labelled_token, platform())
    assert [p.reason for p in problems] == ["SecretNotAllowed"]
    assert token_name in problems[0].message and "spec.pipeline.llm.secretRef" in problems[0].message
    assert [p.reason for p in spec_checks.check_secrets(stealing, "tenant-acme", {token_name: None,
            "tool-keys": _secret("tool-keys", "orders", "crm")}, platform())] == ["SecretNotAllowed"]


def test_region_and_image_checks():
    spec = VoiceAgentSpec.model_validate(agent_spec(worker={"image": "evil.example/x:1"}))
    [image] = spec_checks.check_image(spec, platform())
    assert image.reason == "ImageNotAllowed" and "evil.example/x:1" in image.message and image.blocking
    problems = spec_checks.check_regions(spec, ["us-east"], {"ap-south"}, "acme")
    by_region = {p.region: p for p in problems}
    assert by_region["eu-west"].reason == "RegionNotAllowed" and by_region["eu-west"].region_skipped
    assert by_region["us-east"].reason == "NoNodesInRegion" and not by_region["us-east"].region_skipped
    assert spec_checks.check_name("Support.Bot")[0].reason == "InvalidName"
    assert spec_checks.check_name("support-bot") == []
    assert spec_checks.replica_failure("us-east", 'pods "x" is forbidden: exceeded quota: q')[0].reason == \
        "QuotaExceeded"
    assert spec_checks.replica_failure("us-east", 'pods "x" is forbidden: maximum cpu usage per Container is 4,'
                                                  ' but limit is 64')[0].reason == "QuotaExceeded"


async def test_queue_runs_one_reconcile_per_key_at_a_time_and_collapses_repeats():
    running: set = set()
    overlaps, calls = [], []
    release = asyncio.Event()

    async def reconcile(key, full):
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls.append((key, full))
        await release.wait()
        running.discard(key)
        return None

    queue = ReconcileQueue(reconcile, workers=4, retry_min=0.01, retry_max=0.1)
    task = asyncio.create_task(queue.run())
    queue.add("a", full=False)
    await asyncio.sleep(0.01)
    for _ in range(5):
        queue.add("a", full=False)  # while "a" runs: collapses into one pending run
    queue.add("a", full=True)
    queue.add("b", full=False)
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.wait_for(queue.idle.wait(), 2)
    task.cancel()
    assert overlaps == []
    assert calls.count(("a", False)) == 1 and calls.count(("a", True)) == 1 and ("b", False) in calls


async def test_queue_retries_failures_with_backoff():
    attempts = []

    async def reconcile(key, full):
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise RuntimeError("apiserver said no")
        return None

    queue = ReconcileQueue(reconcile, workers=1, retry_min=0.05, retry_max=1)
    task = asyncio.create_task(queue.run())
    queue.add("x")
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(attempts) == 3:
            break
    task.cancel()
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.05
    assert attempts[2] - attempts[1] > attempts[1] - attempts[0]  # the second wait is the longer one


async def test_delayed_adds_keep_the_earliest_time_and_a_full_run():
    calls = []

    async def reconcile(key, full):
        calls.append((key, full, asyncio.get_running_loop().time()))
        return None

    queue = ReconcileQueue(reconcile, workers=1, retry_min=0.01, retry_max=0.1)
    task = asyncio.create_task(queue.run())
    start = asyncio.get_running_loop().time()
    queue.add("k", full=False, delay=0.3)
    queue.add("k", full=True, delay=0.5)   # later: merged into the 0.3 s run, which becomes full
    queue.add("k", full=False, delay=0.1)  # sooner: replaces it, keeping full
    await asyncio.sleep(0.6)
    task.cancel()
    assert len(calls) == 1
    key, full, at = calls[0]
    assert full is True and at - start < 0.25


async def test_background_runs_wait_for_everything_else():
    order = []

    async def reconcile(key, full):
        order.append((key, full))
        return None

    queue = ReconcileQueue(reconcile, workers=1, retry_min=0.01, retry_max=0.1)
    queue.add("resync-a", background=True)
    queue.add("status-b", full=False)
    queue.add("change-c", full=True)
    queue.add("resync-c", background=True)
    queue.add("change-c", full=True)  # already pending: one run
    task = asyncio.create_task(queue.run())
    await asyncio.wait_for(queue.idle.wait(), 2)
    task.cancel()
    assert order == [("change-c", True), ("status-b", False), ("resync-a", True), ("resync-c", True)]


def test_url_checks_refuse_denied_ip_literals_naming_the_field():
    spec = agent_spec(tools=[{"name": "grab", "http": {"url": "http://2852039166/latest/meta-data/"}}])
    problems = spec_checks.check_urls(VoiceAgentSpec.model_validate(spec), platform())
    assert [(p.reason, p.blocking) for p in problems] == [("URLNotAllowed", True)]
    assert problems[0].message.startswith("spec.tools[0].http.url: tool 'grab'")
    assert "metadata" in problems[0].message
