"""429 and 5xx are retried, as the server says (Retry-After) or with a jittered exponential wait.

The 429s come from the world's apiserver itself: API Priority and Fairness with a priority level of the smallest
concurrency share that rejects (no queue) what it cannot run at once, for this test's ServiceAccount only."""

from __future__ import annotations

import asyncio
import time

import pytest

from voxfleet.kube.backoff import NO_RETRY, Backoff
from voxfleet.kube.client import KubeClient
from voxfleet.kube.credentials import Credentials
from voxfleet.kube.errors import KubeApiError

pytestmark = pytest.mark.world

CONCURRENT_LISTS = 24


async def _tiny_priority_level(admin: KubeClient, namespace: str, service_account: str) -> str:
    name = f"k1-tiny-{namespace}"[:63]
    await admin.apply({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 1, "lendablePercent": 0,
                                                 "borrowingLimitPercent": 0,
                                                 "limitResponse": {"type": "Reject"}}}}, field_manager="k1-test")
    await admin.apply({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": name},
        "spec": {"priorityLevelConfiguration": {"name": name}, "matchingPrecedence": 500,
                 "distinguisherMethod": {"type": "ByUser"},
                 "rules": [{"subjects": [{"kind": "ServiceAccount",
                                          "serviceAccount": {"name": service_account, "namespace": namespace}}],
                            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                               "namespaces": ["*"], "clusterScope": True}]}]}},
        field_manager="k1-test")
    return name


async def _lists(kube: KubeClient, namespace: str) -> list:
    return await asyncio.gather(*(kube.list("ConfigMap", namespace) for _ in range(CONCURRENT_LISTS)),
                                return_exceptions=True)


async def test_throttled_requests_are_retried_until_they_pass(admin, namespace, service_account):
    for i in range(30):  # lists of some size, so that requests overlap at the apiserver
        await admin.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": namespace},
                           "data": {"text": "x" * 2000}}, field_manager="k1-test")
    answer = await admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
                                 body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                       "spec": {"expirationSeconds": 600}})
    credentials = Credentials(server=admin.server, ca_file=admin.credentials.ca_file,
                              token=answer["status"]["token"])
    level = await _tiny_priority_level(admin, namespace, service_account)
    try:
        # The apiserver applies a new FlowSchema within moments: wait until it sheds this account's burst.
        async with KubeClient(credentials, backoff=NO_RETRY) as unretried:
            deadline = time.monotonic() + 30
            while True:
                results = await _lists(unretried, namespace)
                refused = [r for r in results if isinstance(r, KubeApiError)]
                if refused or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        assert refused, "the apiserver never throttled the burst"
        assert all(error.status == 429 for error in refused), {error.status for error in refused}

        # Bursts until one was throttled (how many overlap at the apiserver is up to the machine): every
        # request of every burst must pass.
        started = time.monotonic()
        results, bursts = [], 0
        async with KubeClient(credentials, backoff=Backoff(retries=20)) as retried:
            while not retried.retries and time.monotonic() - started < 30:
                results += await _lists(retried, namespace)
                bursts += 1
            retries = retried.retries
        elapsed = time.monotonic() - started
    finally:
        await admin.delete("FlowSchema", level)
        await admin.delete("PriorityLevelConfiguration", level)

    failures = [r for r in results if isinstance(r, BaseException)]
    print(f"\nbursts of {CONCURRENT_LISTS} concurrent lists: without retries {len(refused)} refused with 429; with "
          f"backoff {len(results) - len(failures)}/{len(results)} passed ({bursts} bursts) after {retries} retries "
          f"in {elapsed:.2f} s")
    assert not failures, failures[:3]
    assert all(len(r["items"]) >= 30 for r in results)
    assert retries > 0
