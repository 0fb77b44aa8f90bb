"""Run helm on charts/voxfleet without a cluster: lint and template, with the chart's own values files."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import yaml

from voxfleet.world import binaries
from voxfleet.world.binaries import K8S_VERSION

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "voxfleet"
# The values files a platform team starts from (charts/voxfleet/ci/, linted by chart-testing too).
VALUES_FILES = {path.stem.removesuffix("-values"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))}
# What the Prometheus Operator serves; passed to `helm template` so the monitoring objects render.
MONITORING_API_VERSIONS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PodMonitor",
                           "monitoring.coreos.com/v1/PrometheusRule")

# The Kubernetes version renders and lints assume (the chart's kubeVersion is checked against it): the test world's.
# Say it: a helm built with `go install` (as build-servers.sh does) has no version stamped in and assumes v1.20.
KUBE_VERSION = K8S_VERSION.lstrip("v")

_HELM_HOME = Path(tempfile.gettempdir()) / "voxfleet-tests-helm-home"


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """helm with private cache/config folders and no cluster (KUBECONFIG points nowhere)."""
    env = dict(os.environ, HELM_CACHE_HOME=str(_HELM_HOME / "cache"), HELM_CONFIG_HOME=str(_HELM_HOME / "config"),
               HELM_DATA_HOME=str(_HELM_HOME / "data"), KUBECONFIG=str(_HELM_HOME / "no-cluster"))
    result = subprocess.run([str(binaries.find("helm").path), *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def template_args(*, release: str = "voxfleet", namespace: str = "voxfleet-system", values: tuple[Path, ...] = (),
                  set_values: tuple[str, ...] = (), api_versions: tuple[str, ...] = (),
                  include_crds: bool = False, kube_version: str = KUBE_VERSION) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version]
    for path in values:
        args += ["--values", str(path)]
    for assignment in set_values:
        args += ["--set", assignment]
    for version in api_versions:
        args += ["--api-versions", version]
    if include_crds:
        args.append("--include-crds")
    return args


def render_text(**kwargs) -> str:
    return helm(*template_args(**kwargs)).stdout


def render(**kwargs) -> list[dict]:
    """The rendered manifests as dicts (hooks included, empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(render_text(**kwargs)) if doc]


def find(manifests: list[dict], kind: str, name: str | None = None) -> dict:
    """The one object of ``kind`` (named ``name``, when given)."""
    matches = [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in matches]}"
    return matches[0]


def container_env(deployment: dict) -> dict[str, dict]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {var["name"]: var for var in container.get("env", [])}
