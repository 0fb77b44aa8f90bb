"""A kubeconfig that authenticates as a ServiceAccount, for tests that prove what the chart's RBAC allows."""

from __future__ import annotations

from pathlib import Path

import yaml

from voxfleet.world.access import Cluster


def service_account_kubeconfig(kube: Cluster, namespace: str, account: str, path: Path,
                               duration: str = "1h") -> Path:
    """The world's cluster with a bound token of the ServiceAccount (TokenRequest API) as the only user."""
    token = kube.kubectl("-n", namespace, "create", "token", account, f"--duration={duration}").stdout.strip()
    cluster = yaml.safe_load(kube.kubeconfig.read_text())["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": account}))
    return path
