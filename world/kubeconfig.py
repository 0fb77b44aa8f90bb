"""Kubeconfig files for the world's identities (admin, controller-manager, scheduler, kwok, pod runner)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write(path: Path, *, server: str, ca_cert: Path, client_cert: Path | None = None, client_key: Path | None = None,
          token: str | None = None, user: str = "voxfleet", cluster: str = "voxfleet-world") -> Path:
    """Write a one-context kubeconfig (paths referenced, not embedded, so the PKI stays in one place)."""
    credentials: dict = {}
    if client_cert is not None:
        credentials = {"client-certificate": str(client_cert), "client-key": str(client_key)}
    if token is not None:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
