"""Out of cluster, an exec plugin's token expires (EKS: 15 min) and the client must renew it before it does,
or after the apiserver answers 401 to a revoked one, without its callers noticing.

The world's apiserver really refuses these tokens once they expire (see rotating_token_plugin.py: each token is
bound to a Secret that TokenExpiry deletes at the announced expiry)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.kube.rotating_token_plugin import APISERVER_TOKEN_CACHE_SECONDS
from voxfleet.kube.backoff import NO_RETRY
from voxfleet.kube.client import KubeClient
from voxfleet.kube.credentials import Credentials, ExecPluginToken
from voxfleet.kube.errors import Unauthorized
from voxfleet.kube.informer import Informer

pytestmark = pytest.mark.world

# Seconds: the plugin announces this expiry and the apiserver refuses the token by then. It cannot be shorter
# than the apiserver's 10 s token cache plus a margin for the token's way to its first use on a loaded machine
# (see rotating_token_plugin.py).
LIFETIME = 12.0


async def test_calls_keep_working_across_token_expiry(exec_kubeconfig, token_expiry, namespace):
    kube = KubeClient.from_kubeconfig(exec_kubeconfig(LIFETIME))
    tokens = kube.tokens
    assert isinstance(tokens, ExecPluginToken)
    first_token = await tokens.token()
    configmaps = Informer(kube, "ConfigMap", namespace=namespace, watch_timeout_seconds=2)  # re-opens its watch often
    configmaps.start()
    calls = 0
    started = time.monotonic()
    try:
        await configmaps.wait_synced(30)
        while time.monotonic() - started < 2.5 * LIFETIME:  # the client renews at 80%: three tokens
            name = f"call-{calls}"
            await kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": name, "namespace": namespace}, "data": {"n": str(calls)}},
                             field_manager="k1-test")
            review = await kube.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:k1-caller"
            await kube.get("ConfigMap", name, namespace)
            calls += 3
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and configmaps.get(namespace, f"call-{calls - 3}") is None:
            await asyncio.sleep(0.05)
        seen_by_watch = configmaps.get(namespace, f"call-{calls - 3}")
    finally:
        await configmaps.stop()
        await kube.aclose()

    print(f"\n{calls} calls over {elapsed:.1f} s with {LIFETIME:.0f} s tokens: plugin ran {tokens.runs} times, "
          f"{token_expiry.expired} tokens revoked at the apiserver, {tokens.rejections} answered 401 "
          f"(renewed after), informer relists {configmaps.relists}")
    # The first token is now refused by the apiserver itself: the calls above outlived real expiries. (Its token
    # cache can answer for a few more seconds on a loaded machine: ask until it refuses, within a bound.)
    async with KubeClient(Credentials(server=kube.server, ca_file=kube.credentials.ca_file, token=first_token),
                          backoff=NO_RETRY) as stale:
        deadline = time.monotonic() + 3 * APISERVER_TOKEN_CACHE_SECONDS
        with pytest.raises(Unauthorized):
            while time.monotonic() < deadline:
                await stale.get("ConfigMap", "call-0", namespace)
                await asyncio.sleep(0.2)
    assert tokens.runs >= 3, "the token was not renewed as it expired"
    assert token_expiry.expired >= 2
    assert seen_by_watch is not None, "the informer's watch stopped following the namespace"


async def test_a_revoked_token_is_replaced_after_one_401(exec_kubeconfig, token_expiry, namespace):
    kube = KubeClient.from_kubeconfig(exec_kubeconfig(600))  # will not expire during the test
    try:
        await kube.list("ConfigMap", namespace)
        assert kube.tokens.runs == 1
        revoked = await token_expiry.revoke_all()
        revoked_at = time.monotonic()
        # The apiserver keeps accepting the token for up to 10 s (its token cache), then answers 401 once.
        deadline = time.monotonic() + 6 * APISERVER_TOKEN_CACHE_SECONDS  # 10-19 s measured, loaded machine
        while kube.tokens.rejections == 0 and time.monotonic() < deadline:
            await kube.list("ConfigMap", namespace)
            await asyncio.sleep(0.05)
        refused_after = time.monotonic() - revoked_at
        listing = await kube.list("ConfigMap", namespace)
    finally:
        await kube.aclose()
    print(f"\nrevoked {revoked} token(s); the apiserver refused it {refused_after:.1f} s later; 401s seen "
          f"{kube.tokens.rejections}, plugin runs {kube.tokens.runs}")
    assert kube.tokens.rejections == 1 and kube.tokens.runs == 2
    assert any(item["metadata"]["name"] == "kube-root-ca.crt" for item in listing["items"])
