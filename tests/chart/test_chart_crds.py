"""The chart's CRD upgrade path (crds.enabled, crds.keep) with real Helm against the test world's apiserver.

The world's own voxfleet CRDs serve every other test, so these releases must not own them: a Helm post-renderer
keeps only the chart's rendered CRDs and moves them into a group of this test's own
(`cttenants.<id>.chart-test.voxfleet.dev`). Everything Helm decides (ownership, the keep annotation, upgrading a
template-rendered CRD, deleting what a later render drops) is decided on the chart's objects as rendered.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml

from voxfleet.world.access import Cluster

from .helm_render import CHART

pytestmark = pytest.mark.world

POST_RENDERER = """\
#!{python}
# Keep only the chart's CRDs and move them into this test's group (stdin: Helm's render, stdout: what Helm applies).
# Their names change too (Ct...), without short names or categories: kubectl resolves `va`, `tenant` and
# `voiceagents` across groups, and a parallel test's `kubectl get va` listed this group's empty VoiceAgents.
import sys, yaml
kept = []
for doc in yaml.safe_load_all(sys.stdin):
    if doc and doc["kind"] == "CustomResourceDefinition":
        names = doc["spec"]["names"]
        doc["spec"]["names"] = {{"kind": "Ct" + names["kind"], "listKind": "Ct" + names["listKind"],
                                "plural": "ct" + names["plural"], "singular": "ct" + names["singular"]}}
        doc["spec"]["group"] = "{group}"
        doc["metadata"]["name"] = doc["spec"]["names"]["plural"] + ".{group}"
        kept.append(doc)
yaml.safe_dump_all(kept, sys.stdout)
"""


class CrdRelease:
    def __init__(self, kube: Cluster, namespace: str, tmp_path: Path):
        self.kube, self.namespace = kube, namespace
        self.name = f"crd-{uuid.uuid4().hex[:5]}"
        self.group = f"{self.name}.chart-test.voxfleet.dev"
        self.renderer = tmp_path / f"{self.name}-post-renderer"
        self.renderer.write_text(POST_RENDERER.format(python=sys.executable, group=self.group))
        self.renderer.chmod(0o755)
        self.crds = [f"cttenants.{self.group}", f"ctvoiceagents.{self.group}"]

    def helm(self, verb: str, chart: Path, *values: str) -> None:
        sets = [a for v in values for a in ("--set", v)]
        self.kube.helm(verb, self.name, str(chart), "-n", self.namespace, "--post-renderer", str(self.renderer),
                       *sets, timeout=180)

    def live(self) -> dict[str, dict]:
        answer = self.kube.kubectl("get", "crd", "-o", "yaml", "-l", f"app.kubernetes.io/instance={self.name}")
        return {c["metadata"]["name"]: c for c in yaml.safe_load(answer.stdout)["items"]}

    def tenant_description(self) -> str:
        crd = self.live()[self.crds[0]]
        return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"]

    def cleanup(self) -> None:
        self.kube.helm("uninstall", self.name, "-n", self.namespace, check=False, timeout=120)
        self.kube.kubectl("delete", "crd", "--ignore-not-found", *self.crds, check=False)


@pytest.fixture
def crd_namespace(kube: Cluster):
    name = kube.new_namespace("vfcrds")
    yield name
    kube.delete_namespace(name)


def _next_chart_version(tmp_path: Path) -> Path:
    """This chart with one CRD changed, as the next chart version would change it."""
    chart = tmp_path / "next" / "voxfleet"
    shutil.copytree(CHART, chart)
    tenants = chart / "files" / "crds" / "voxfleet.dev_tenants.yaml"
    crd = yaml.safe_load(tenants.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["description"] = schema.get("description", "") + " (next chart version)"
    tenants.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def test_crds_install_upgrade_and_are_kept_when_dropped_or_uninstalled(kube, crd_namespace, tmp_path):
    release = CrdRelease(kube, crd_namespace, tmp_path)
    try:
        release.helm("install", CHART)
        live = release.live()
        assert sorted(live) == sorted(release.crds)
        for name, crd in live.items():
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", name
            assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name, name
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in release.crds))
        kube.kubectl("apply", "-f", "-", input=textwrap.dedent(f"""\
            apiVersion: {release.group}/v1alpha1
            kind: CtTenant
            metadata: {{name: survivor}}
            spec: {{allowedRegions: [us-east]}}
            """))
        # `helm upgrade` upgrades a CRD (Helm's crds/ folder never would).
        release.helm("upgrade", _next_chart_version(tmp_path))
        assert release.tenant_description().endswith("(next chart version)")
        # crds.enabled=false drops them from the release: kept, with their objects.
        release.helm("upgrade", CHART, "crds.enabled=false")
        assert sorted(release.live()) == sorted(release.crds)
        kube.kubectl("get", f"cttenants.{release.group}", "survivor")
        release.helm("upgrade", CHART)  # and the release owns them again
        kube.helm("uninstall", release.name, "-n", crd_namespace, timeout=120)
        assert sorted(release.live()) == sorted(release.crds), "helm uninstall deleted the CRDs"
        kube.kubectl("get", f"cttenants.{release.group}", "survivor")
        print(f"CRDs of {release.group}: installed, upgraded, kept when dropped and on uninstall, a Tenant survived")
    finally:
        release.cleanup()


def test_without_keep_dropping_the_crds_deletes_them(kube, crd_namespace, tmp_path):
    """The control: what crds.keep prevents is real (Helm deletes a CRD a later render no longer has)."""
    release = CrdRelease(kube, crd_namespace, tmp_path)
    try:
        release.helm("install", CHART, "crds.keep=false")
        assert sorted(release.live()) == sorted(release.crds)
        assert all("helm.sh/resource-policy" not in c["metadata"]["annotations"] for c in release.live().values())
        release.helm("upgrade", CHART, "crds.keep=false", "crds.enabled=false")
        upgraded = time.monotonic()
        # The apiserver removes a deleted CRD's storage before its finalizer lets go: seconds, but once over 60 s
        # in a loaded parallel phase; kubectl's own timeout ends first, so a slow deletion says where it stands.
        waited = kube.kubectl("wait", "--for=delete", "--timeout=150s", *(f"crd/{n}" for n in release.crds),
                              check=False, timeout=180)
        assert waited.returncode == 0, (waited.stderr, [c["metadata"].get("finalizers") for c in
                                                        release.live().values()],
                                        [c.get("status", {}).get("conditions") for c in release.live().values()])
        print(f"CRDs of {release.group} without keep: deleted by the upgrade that dropped them, gone"
              f" {time.monotonic() - upgraded:.1f} s after it")
    finally:
        release.cleanup()
