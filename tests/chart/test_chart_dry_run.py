"""`helm template` with the default values and each values file, applied to the real apiserver of the test world
as a server-side dry run: schema, strict field validation, admission (Pod Security "restricted") all included."""

from __future__ import annotations

import pytest
import yaml

from .helm_render import MONITORING_API_VERSIONS, VALUES_FILES, render_text
from .monitoring_crds import CRD_NAMES as MONITORING_CRD_NAMES
from .monitoring_crds import all_crds as monitoring_crds

pytestmark = pytest.mark.world

VALUE_SETS = {"default": (), **{name: (path,) for name, path in VALUES_FILES.items()}}
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}


@pytest.fixture(scope="module")
def monitoring_api(kube):
    """ServiceMonitor/PodMonitor/PrometheusRule served by the apiserver (server-side apply: idempotent across
    xdist workers)."""
    manifests = "\n---\n".join(yaml.safe_dump(crd) for crd in monitoring_crds())
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=voxfleet-chart-tests", "-f", "-",
                 input=manifests)
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *MONITORING_CRD_NAMES)


@pytest.fixture
def restricted_namespace(kube):
    name = kube.new_namespace("chart-dry-run", labels=RESTRICTED)
    yield name
    kube.delete_namespace(name)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rendered_chart_passes_a_server_side_dry_run(name, kube, monitoring_api, restricted_namespace):
    manifests = render_text(namespace=restricted_namespace, values=VALUE_SETS[name],
                            api_versions=MONITORING_API_VERSIONS, include_crds=True)
    result = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifests, check=False)
    assert result.returncode == 0, f"the apiserver refused the {name} rendering:\n{result.stderr}"
    assert "would violate PodSecurity" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    documents = [d for d in yaml.safe_load_all(manifests) if d]
    assert len(applied) == len(documents), result.stdout
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "ClusterRole", "NetworkPolicy", "Lease", "Job", "CustomResourceDefinition"} <= kinds
    if name == "production":
        assert {"Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds


def test_a_misplaced_field_is_refused_by_the_dry_run(kube, monitoring_api, restricted_namespace):
    """The dry run is a real check: the same rendering with one field in the wrong place fails, naming it."""
    manifests = render_text(namespace=restricted_namespace, values=VALUE_SETS["production"],
                            api_versions=MONITORING_API_VERSIONS)
    broken = manifests.replace("      interval: 15s", "      intervall: 15s", 1)
    assert broken != manifests
    result = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=broken, check=False)
    assert result.returncode != 0
    assert "intervall" in result.stderr, result.stderr


def test_pod_security_restricted_is_really_enforced_in_the_dry_run(kube, restricted_namespace):
    """Our pods pass "restricted" above because of their security settings: drop one and admission refuses."""
    manifests = render_text(namespace=restricted_namespace,
                            set_values=("securityContext.allowPrivilegeEscalation=true",))
    result = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests, check=False)
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr and "allowPrivilegeEscalation" in result.stderr, result.stderr
