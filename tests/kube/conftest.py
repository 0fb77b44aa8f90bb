"""Fixtures for the kube layer's tests: a ServiceAccount with rights in the test namespace, kubeconfigs whose
exec plugin issues it short-lived tokens, and the expiry the world's apiserver enforces on them."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from tests.kube.rotating_token_plugin import REVOKE_AT, TOKEN_LABEL
from voxfleet.kube.client import KubeClient
from voxfleet.world.access import Cluster

PLUGIN = Path(__file__).with_name("rotating_token_plugin.py")


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop: the clients and tasks live there
async def admin(kube: Cluster) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(kube.kubeconfig) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop: the clients and tasks live there
async def service_account(admin: KubeClient, namespace: str) -> str:
    """A ServiceAccount that may edit the test namespace (the built-in `edit` ClusterRole)."""
    name = "k1-caller"
    await admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": name, "namespace": namespace}}, field_manager="k1-test")
    await admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": name, "namespace": namespace},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                       "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
                      field_manager="k1-test")
    return name


@pytest.fixture
def exec_kubeconfig(kube: Cluster, namespace: str, service_account: str,
                    tmp_path: Path) -> Callable[[float], Path]:
    """kubeconfig(lifetime): a kubeconfig whose user is an exec plugin issuing `lifetime`-second tokens."""
    admin_config = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin_config["clusters"][0]

    def write(lifetime: float) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
            "users": [{"name": "k1-exec", "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                "args": [str(PLUGIN), "--admin-kubeconfig", str(kube.kubeconfig), "--namespace", namespace,
                         "--service-account", service_account, "--lifetime", str(lifetime)],
                "interactiveMode": "Never"}}}],
            "contexts": [{"name": "k1", "context": {"cluster": cluster["name"], "user": "k1-exec",
                                                    "namespace": namespace}}],
            "current-context": "k1"}
        path = tmp_path / f"exec-{lifetime}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


class TokenExpiry:
    """Deletes each token's bound Secret at its REVOKE_AT: the apiserver refuses the token by its announced
    expiry (see rotating_token_plugin.py)."""

    def __init__(self, admin: KubeClient, namespace: str):
        self.admin, self.namespace = admin, namespace
        self.expired = 0

    async def enforce_forever(self) -> None:
        while True:
            listing = await self.admin.list("Secret", self.namespace, label_selector=TOKEN_LABEL)
            now = time.time()
            for secret in listing["items"]:
                meta = secret["metadata"]
                revoke_at = (meta.get("annotations") or {}).get(REVOKE_AT)  # None: still being issued
                if revoke_at is not None and float(revoke_at) <= now:
                    await self.admin.delete("Secret", meta["name"], self.namespace)
                    self.expired += 1
            await asyncio.sleep(0.1)

    async def revoke_all(self) -> int:
        """Revoke every token issued so far (before its expiry), as an administrator would."""
        listing = await self.admin.list("Secret", self.namespace, label_selector=TOKEN_LABEL)
        for secret in listing["items"]:
            await self.admin.delete("Secret", secret["metadata"]["name"], self.namespace)
        return len(listing["items"])


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop: the clients and tasks live there
async def token_expiry(admin: KubeClient, namespace: str) -> AsyncIterator[TokenExpiry]:
    expiry = TokenExpiry(admin, namespace)
    task = asyncio.create_task(expiry.enforce_forever())
    yield expiry
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
