"""`python -m voxfleet.platform_secrets`, the chart's hook Job command, against the test world's apiserver: it creates
each Secret once, keeps whatever exists (never a new value), refuses a Secret without its key, releases a Secret an
older chart rendered from Helm before Helm could delete it, works with exactly the hook Role's rights, and says
names, never values. Then the real upgrade from the chart before the hook (git history) keeps both values."""

from __future__ import annotations

import base64
import os
import string
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
import yaml

from voxfleet.world.access import Cluster

from .helm_render import CHART, render
from .service_account_kubeconfig import service_account_kubeconfig

pytestmark = pytest.mark.world

PYTHON = sys.executable
ROOT = CHART.parents[1]
WANTED = ("voxfleet-worker-token/token", "voxfleet-session-key/key")


def _run(kube: Cluster, namespace: str, *secrets: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
    args = [PYTHON, "-m", "voxfleet.platform_secrets", f"--namespace={namespace}",
            *(f"--secret={s}" for s in secrets), "--label=app.kubernetes.io/instance=test"]
    env = dict(os.environ, KUBECONFIG=str(kubeconfig or kube.kubeconfig))
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


def _data(kube: Cluster, namespace: str, name: str) -> dict[str, str]:
    secret = yaml.safe_load(kube.kubectl("get", "secret", name, "-n", namespace, "-o", "yaml").stdout)
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()} | {
        "_annotations": secret["metadata"].get("annotations") or {}, "_labels": secret["metadata"].get("labels") or {}}


@pytest.fixture
def platform_namespace(kube: Cluster):
    name = kube.new_namespace("vfsecrets")
    yield name
    kube.delete_namespace(name)


def test_creates_once_then_keeps_and_never_says_a_value(kube, platform_namespace):
    first = _run(kube, platform_namespace, *WANTED)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created") == 2, first.stdout
    values = {}
    for entry in WANTED:
        name, key = entry.split("/")
        data = _data(kube, platform_namespace, name)
        value = data[key]
        assert len(value) == 64 and set(value) <= set(string.ascii_letters + string.digits)
        assert value not in first.stdout + first.stderr
        assert data["_labels"]["app.kubernetes.io/managed-by"] == "voxfleet-platform-secrets"
        assert data["_labels"]["app.kubernetes.io/instance"] == "test"
        assert data["_annotations"] == {"helm.sh/resource-policy": "keep"}
        values[name] = value
    assert values["voxfleet-worker-token"] != values["voxfleet-session-key"]
    second = _run(kube, platform_namespace, *WANTED)
    assert second.returncode == 0 and second.stdout.count(": kept\n") == 2, second.stdout + second.stderr
    for entry in WANTED:
        name, key = entry.split("/")
        assert _data(kube, platform_namespace, name)[key] == values[name], f"{name} changed on the second run"
    print(f"created 2 Secrets, kept both on the second run: {second.stdout.strip()!r}")


def test_a_secret_without_its_key_is_refused_and_left_alone(kube, platform_namespace):
    kube.kubectl("-n", platform_namespace, "create", "secret", "generic", "voxfleet-session-key",
                 "--from-literal=other=users-own-value")
    result = _run(kube, platform_namespace, "voxfleet-session-key/key")
    assert result.returncode == 1
    assert "voxfleet-session-key exists but has no value under key 'key'" in result.stderr, result.stderr
    assert "users-own-value" not in result.stdout + result.stderr
    data = _data(kube, platform_namespace, "voxfleet-session-key")
    assert data["other"] == "users-own-value" and "key" not in data


def test_a_secret_an_older_chart_rendered_is_released_from_helm_with_its_value(kube, platform_namespace):
    """What the chart before the hook left: a release-owned Secret. Helm deletes release objects the new chart
    no longer renders unless the live object says helm.sh/resource-policy: keep."""
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "voxfleet-worker-token", "namespace": platform_namespace,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "old", "meta.helm.sh/release-namespace": platform_namespace}},
        "stringData": {"token": "an-older-charts-generated-token-0123456789"}}))
    result = _run(kube, platform_namespace, "voxfleet-worker-token/token")
    assert result.returncode == 0 and "kept, released from Helm" in result.stdout, result.stdout + result.stderr
    data = _data(kube, platform_namespace, "voxfleet-worker-token")
    assert data["token"] == "an-older-charts-generated-token-0123456789"
    assert data["_annotations"].get("helm.sh/resource-policy") == "keep"
    assert "meta.helm.sh/release-name" not in data["_annotations"]
    assert data["_labels"]["app.kubernetes.io/managed-by"] == "voxfleet-platform-secrets"


def _hook_rbac(namespace: str) -> list[dict]:
    """The hook's ServiceAccount, Role and RoleBinding as the chart renders them (hook annotations dropped: applied
    here as plain objects)."""
    objects = [m for m in render(namespace=namespace) if m["metadata"]["name"] == "voxfleet-secrets"
               and m["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    for m in objects:
        m["metadata"].pop("annotations", None)
    return objects




def test_the_hook_role_is_enough_and_reaches_no_other_secret(kube, platform_namespace, tmp_path):
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(_hook_rbac(platform_namespace)))
    kube.kubectl("-n", platform_namespace, "create", "secret", "generic", "someone-elses", "--from-literal=a=b")
    who = f"--as=system:serviceaccount:{platform_namespace}:voxfleet-secrets"

    def can(*args: str) -> bool:
        return kube.kubectl("auth", "can-i", who, "-n", platform_namespace, *args, check=False).stdout.strip() == "yes"

    assert can("get", "secrets/voxfleet-worker-token") and can("patch", "secrets/voxfleet-session-key")
    assert can("create", "secrets")  # RBAC cannot name what is created
    refused = [args for args in (("get", "secrets/someone-elses"), ("list", "secrets"), ("watch", "secrets"),
                                 ("update", "secrets/voxfleet-worker-token"), ("delete", "secrets/voxfleet-worker-token"),
                                 ("patch", "secrets/someone-elses"), ("get", "pods"), ("create", "secrets", "-n", "default"))
               if can(*args)]
    assert refused == [], f"the hook's ServiceAccount may: {refused}"
    kubeconfig = service_account_kubeconfig(kube, platform_namespace, "voxfleet-secrets",
                                            tmp_path / "hook-kubeconfig", duration="10m")
    for outcome in ("created", "kept"):
        result = _run(kube, platform_namespace, *WANTED, kubeconfig=kubeconfig)
        assert result.returncode == 0 and result.stdout.count(f": {outcome}\n") == 2, result.stdout + result.stderr


def _chart_before_the_hook(tmp_path: Path) -> tuple[Path, str]:
    """charts/voxfleet as of the last commit that still rendered the Secrets itself (randAlphaNum + lookup)."""
    template = "charts/voxfleet/templates/worker-token-secret.yaml"
    removal = subprocess.run(["git", "log", "--diff-filter=D", "--format=%H", "-1", "--", template], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
    commit = f"{removal}^" if removal else "HEAD"
    archive = tmp_path / "old-chart.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), commit, "charts/voxfleet"], cwd=ROOT,
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "old", filter="data")
    chart = tmp_path / "old" / "charts" / "voxfleet"
    assert (chart / "templates" / "worker-token-secret.yaml").exists(), f"{commit}: not the chart before the hook"
    return chart, commit


def test_upgrading_from_the_chart_that_rendered_the_secrets_keeps_their_values(kube, pods, platform_namespace,
                                                                              tmp_path):
    """A real `helm install` of the previous chart (its pods on kwok's simulated nodes: only the Secrets matter
    here), then `helm upgrade` to this chart: the hook Job runs for real on a runner node, releases the two Secrets
    from Helm, and Helm's upgrade, which no longer renders them, keeps them with their values."""
    release = f"up-{uuid.uuid4().hex[:5]}"
    old_chart, commit = _chart_before_the_hook(tmp_path)
    kube.helm("install", release, str(old_chart), "-n", platform_namespace, timeout=300)
    session_key = f"{release}-voxfleet-session-key"
    before = {"voxfleet-worker-token": _data(kube, platform_namespace, "voxfleet-worker-token")["token"],
              session_key: _data(kube, platform_namespace, session_key)["key"]}
    placement = pods.placement()
    values = tmp_path / "upgrade-values.yaml"
    values.write_text(yaml.safe_dump({"crds": {"enabled": False}, "secretsJob": {
        "nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]}}))
    try:
        kube.helm("upgrade", release, str(CHART), "-n", platform_namespace, "-f", str(values), "--timeout", "3m",
                  timeout=300)
        for name, value in before.items():
            data = _data(kube, platform_namespace, name)
            assert data["token" if name == "voxfleet-worker-token" else "key"] == value, f"{name} was rotated"
            assert data["_annotations"].get("helm.sh/resource-policy") == "keep"
        logs = sorted(pods.pod_dir(platform_namespace, "x").parent.glob(f"{release}-voxfleet-secrets-*/secrets.log"))
        assert logs and logs[-1].read_text().count("kept, released from Helm") == 2, [p.read_text() for p in logs]
        manifest = kube.helm("get", "manifest", release, "-n", platform_namespace).stdout
        assert "kind: Secret" not in manifest
        print(f"upgrade from the chart of {commit[:12]}: both Secrets kept with their values, released from Helm")
    finally:
        kube.helm("uninstall", release, "-n", platform_namespace, "--timeout", "2m", check=False, timeout=180)
