"""skaffold.yaml, checked by skaffold itself: `skaffold diagnose --yaml-only` (schema and upgrade to its latest
config version) and `skaffold render` of both profiles (helm template with the image skaffold would build).

Runs only where skaffold is installed: its build from the Go module takes ~4.5 minutes on 2 cores (measured), too
long for CI, so `tests/chart/build-skaffold.sh` is a manual step (cached as ~/.cache/voxfleet/bin/skaffold-<v>).
The image build itself is not run here (no Docker daemon); see test_image.py for the buildah build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from voxfleet.world import binaries

from .helm_render import ROOT

SKAFFOLD_VERSION = "v2.24.0"  # keep in step with build-skaffold.sh


def _skaffold() -> Path | None:
    for candidate in (os.environ.get("VOXFLEET_SKAFFOLD_BIN"),
                      str(binaries.cache_dir() / f"skaffold-{SKAFFOLD_VERSION}"), shutil.which("skaffold")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


SKAFFOLD = _skaffold()
pytestmark = pytest.mark.skipif(SKAFFOLD is None, reason="skaffold is not installed (optional: "
                                                        "tests/chart/build-skaffold.sh builds it, ~4.5 min)")


@pytest.fixture(scope="module")
def skaffold_env(tmp_path_factory) -> dict[str, str]:
    """skaffold with helm on PATH (the world's helm), its own HOME (no telemetry, no update check)."""
    home = tmp_path_factory.mktemp("skaffold-home")
    (home / ".skaffold").mkdir()
    (home / ".skaffold" / "config").write_text(yaml.safe_dump(
        {"global": {"collect-metrics": False, "update-check": False, "survey": {"disable-prompt": True}}}))
    tools = home / "bin"
    tools.mkdir()
    (tools / "helm").symlink_to(binaries.find("helm").path)
    return dict(os.environ, HOME=str(home), PATH=f"{tools}:{os.environ['PATH']}", SKAFFOLD_UPDATE_CHECK="false",
                KUBECONFIG=str(home / "no-cluster"))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(SKAFFOLD), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"skaffold {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result


def test_skaffold_diagnose_accepts_the_config(skaffold_env):
    effective = yaml.safe_load(_run(skaffold_env, "diagnose", "--yaml-only").stdout)
    assert effective["build"]["artifacts"][0]["image"] == "voxfleet"
    release = effective["manifests"]["helm"]["releases"][0]
    assert Path(release["chartPath"]) == ROOT / "charts" / "voxfleet"
    dev = yaml.safe_load(_run(skaffold_env, "diagnose", "--yaml-only", "-p", "dev").stdout)
    assert dev["build"]["local"]["push"] is False


@pytest.mark.parametrize("profile", [None, "dev"])
def test_skaffold_render_puts_the_built_image_everywhere(skaffold_env, profile):
    args = ["render", "--digest-source=tag", "--offline=true"] + (["-p", profile] if profile else [])
    documents = [d for d in yaml.safe_load_all(_run(skaffold_env, *args).stdout) if d]
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert set(deployments) == {"voxfleet-operator", "voxfleet-gateway"}
    images = {c["image"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1 and images.pop().startswith("voxfleet:")
    platform = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "voxfleet-platform")
    built = deployments["voxfleet-gateway"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert platform["data"]["VOXFLEET_WORKER_IMAGE"] == built  # worker pools run what this run built
    if profile == "dev":
        assert platform["data"]["VOXFLEET_LOG_FORMAT"] == "console"
        assert deployments["voxfleet-gateway"]["spec"]["replicas"] == 1
        assert not [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    else:
        assert deployments["voxfleet-gateway"]["spec"]["replicas"] == 2
