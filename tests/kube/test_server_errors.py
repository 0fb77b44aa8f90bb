"""5xx answers: idempotent verbs are sent again after a jittered wait; a create only when the server said when
(Retry-After), since a 500 after a POST may mean it was done. Through a real proxy in front of the apiserver."""

from __future__ import annotations

import time

import pytest

from tests.kube.failing_proxy import Failure, FailingProxy
from voxfleet.kube.client import KubeClient
from voxfleet.kube.credentials import Credentials
from voxfleet.kube.errors import KubeApiError

pytestmark = pytest.mark.world


def _configmap(namespace: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"k": "v"}}


async def test_server_errors_are_retried_only_when_safe(admin: KubeClient, namespace):
    proxy = await FailingProxy(admin).start()
    client = KubeClient(Credentials(server=proxy.url))
    try:
        # A read: two 503s without Retry-After, then the apiserver's answer.
        proxy.failures += [Failure("GET", 503), Failure("GET", 502)]
        root_ca = await client.get("ConfigMap", "kube-root-ca.crt", namespace)
        assert root_ca["metadata"]["name"] == "kube-root-ca.crt"
        assert [s for m, _, s in proxy.seen if m == "GET"] == [503, 502, 200] and client.retries == 2

        # A create answered 500 without Retry-After: not sent again (it may have been done), the error surfaces.
        proxy.seen.clear()
        proxy.failures.append(Failure("POST", 500))
        with pytest.raises(KubeApiError) as refused:
            await client.create(_configmap(namespace, "once"))
        assert refused.value.status == 500 and [s for m, _, s in proxy.seen] == [500]
        assert await admin.get_or_none("ConfigMap", "once", namespace) is None

        # A create answered 503 with Retry-After: sent again after the wait the server asked for, created once.
        proxy.seen.clear()
        proxy.failures.append(Failure("POST", 503, retry_after="1"))
        started = time.monotonic()
        created = await client.create(_configmap(namespace, "after-wait"))
        waited = time.monotonic() - started
        assert [s for m, _, s in proxy.seen] == [503, 201] and waited >= 1.0
        assert created["metadata"]["name"] == "after-wait"

        # Server-side apply is idempotent: retried on 504 too.
        proxy.seen.clear()
        proxy.failures.append(Failure("PATCH", 504))
        await client.apply(_configmap(namespace, "applied"), field_manager="k1-test")
        assert [s for m, _, s in proxy.seen] == [504, 201]
    finally:
        await client.aclose()
        await proxy.stop()
    print(f"\nretries {client.retries}; the create told Retry-After: 1 waited {waited:.2f} s")
