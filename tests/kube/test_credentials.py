"""Kubeconfig forms the layer reads, each proven by a call to the real apiserver: embedded certificates
(`*-data`, as cloud providers write them), file references relative to the kubeconfig, a $KUBECONFIG list merged
first-wins like kubectl, a chosen context; and Retry-After in both of its forms."""

from __future__ import annotations

import base64
import os
import time
from email.utils import formatdate
from pathlib import Path

import pytest
import yaml

from voxfleet.kube.backoff import parse_retry_after
from voxfleet.kube.client import KubeClient
from voxfleet.kube.credentials import Credentials, CredentialsError


def _admin(kube) -> tuple[dict, dict]:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    return config["clusters"][0]["cluster"], config["users"][0]["user"]


def _config(cluster: dict, user: dict, *, name: str = "world", namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": name, "cluster": cluster}], "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}]}


async def _nodes(credentials: Credentials) -> int:
    async with KubeClient(credentials) as client:
        return len((await client.list("Node"))["items"])


@pytest.mark.world
async def test_embedded_certificates(kube, tmp_path):
    cluster, user = _admin(kube)

    def data(path: str) -> str:
        return base64.b64encode(Path(path).read_bytes()).decode()

    embedded = _config({"server": cluster["server"], "certificate-authority-data": data(cluster["certificate-authority"])},
                       {"client-certificate-data": data(user["client-certificate"]),
                        "client-key-data": data(user["client-key"])}, namespace="acme")
    path = tmp_path / "embedded"
    path.write_text(yaml.safe_dump(embedded))
    credentials = Credentials.from_kubeconfig(path)
    assert credentials.namespace == "acme" and credentials.ca_file is None
    assert await _nodes(credentials) > 0


@pytest.mark.world
async def test_relative_files_merged_list_and_context(kube, tmp_path):
    cluster, user = _admin(kube)
    folder = tmp_path / "conf"
    folder.mkdir()
    for key, source in (("ca.crt", cluster["certificate-authority"]), ("tls.crt", user["client-certificate"]),
                        ("tls.key", user["client-key"])):
        (folder / key).write_bytes(Path(source).read_bytes())
    relative = _config({"server": cluster["server"], "certificate-authority": "ca.crt"},
                       {"client-certificate": "tls.crt", "client-key": "tls.key"}, name="real")
    (folder / "real").write_text(yaml.safe_dump(relative))
    broken = _config({"server": "https://127.0.0.1:1"}, {"token": "nope"}, name="broken")
    broken["contexts"].append({"name": "real", "context": {"cluster": "broken", "user": "broken"}})  # shadowed
    (tmp_path / "first").write_text(yaml.safe_dump(broken))
    merged = os.pathsep.join([str(tmp_path / "first"), str(folder / "real")])

    chosen = Credentials.from_kubeconfig(merged, context="real")
    # The first file's "real" context wins (kubectl's rule), so pick the second file's alone for the real call.
    assert chosen.server == "https://127.0.0.1:1"
    assert Credentials.from_kubeconfig(merged).server == "https://127.0.0.1:1"
    alone = Credentials.from_kubeconfig(folder / "real")
    assert alone.ca_file == str(folder / "ca.crt")
    assert await _nodes(alone) > 0
    with pytest.raises(CredentialsError, match="context 'nowhere' not found"):
        Credentials.from_kubeconfig(merged, context="nowhere")


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_a_while = parse_retry_after(formatdate(usegmt=True, timeval=time.time() + 30))
    assert in_a_while is not None and 25 <= in_a_while <= 31
